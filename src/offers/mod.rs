//! The pure middle: offers and static invoices built from server paths, and the cache deciding
//! every state change, time passed in. Nothing here does I/O or holds a lock.

pub(crate) mod builder;
pub(crate) mod cache;
pub(crate) mod responder;
