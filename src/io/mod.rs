//! What is kept on disk: offer records and their formats, the kept events, and the data dir's
//! lock across processes.

pub(crate) mod lock;
pub(crate) mod store;
