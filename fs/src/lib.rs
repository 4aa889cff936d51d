//! Files and paths on the io_uring runtime.
//!
//! This crate is a placeholder until the file-system issue lands: it has no
//! public items yet. Every file operation will be a plain user of
//! [`runtime::op`].
