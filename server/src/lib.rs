//! Reference static invoice server.
