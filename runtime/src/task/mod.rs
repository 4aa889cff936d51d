//! Tasks: the heap-allocated future with its reference-counted waker
//! (`raw.rs`), awaiting its output (`join.rs`, `error.rs`), and the queue
//! other threads wake tasks through (`remote.rs`).

mod error;
mod join;
pub(crate) mod raw;
pub(crate) mod remote;

pub use error::JoinError;
pub use join::JoinHandle;
