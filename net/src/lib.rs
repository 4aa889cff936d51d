//! Sockets on the io_uring runtime.
//!
//! This crate is a placeholder until the networking issue lands: it has no
//! public items yet. Every socket operation will be a plain user of
//! [`runtime::op`].
