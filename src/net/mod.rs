//! The wire: one onion messenger and noise-encrypted TCP connection per server, and how
//! messages are routed through it.

pub(crate) mod router;
pub(crate) mod transport;
