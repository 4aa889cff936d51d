//! A single-threaded async runtime built directly on Linux io_uring.
//!
//! One thread owns one io_uring. Every I/O operation is a submission queue
//! entry (SQE) whose `user_data` carries the key of a slab slot; its
//! completion (CQE) finds that slot, stores the result and wakes exactly the
//! task waiting on it. Buffers are owned by the operation while the kernel may
//! touch them, which is why every I/O method takes its buffer by value and
//! hands it back in a [`BufResult`].
//!
//! ```
//! #[runtime::main]
//! async fn main() {
//!     let handle = runtime::spawn(async {
//!         runtime::time::sleep(std::time::Duration::from_millis(1)).await;
//!         40 + 2
//!     });
//!     assert_eq!(handle.await.unwrap(), 42);
//! }
//! ```
//!
//! The pieces:
//!
//! - [`Runtime`] and [`Builder`] create a ring and run futures on it
//!   ([`Runtime::block_on`], the [`main`] and [`test`] attributes).
//! - [`spawn`], [`spawn_blocking`], [`yield_now`], [`JoinHandle`] and
//!   [`JoinError`] manage tasks.
//! - [`Pool`], [`PoolBuilder`], [`PoolHandle`] and [`worker_index`] run
//!   one runtime per core (thread-per-core, no work stealing).
//! - [`time`] has sleeps, timeouts and intervals.
//! - [`signal`] turns Unix signals (SIGINT, SIGTERM, ...) into futures.
//! - [`buf`] has the buffer traits that let the kernel own a buffer.
//! - [`op`] is the documented submission API on which every I/O type is
//!   built; third parties can submit their own io_uring operations with it.
//! - Where io_uring is refused, the same runtime runs on an epoll driver
//!   ([`DriverKind`], [`Builder::driver`], `RUNTIME_DRIVER=io_uring|epoll`).
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod blocking;
pub mod buf;
#[path = "buf/ring.rs"]
pub mod bufring;
mod builder;
mod driver;
#[path = "buf/fixed.rs"]
pub mod fixed;
#[cfg(feature = "hyper")]
pub mod hyper;
pub mod io;
mod metrics;
pub mod op;
mod pool;
mod runtime;
mod scheduler;
#[path = "buf/send_ring.rs"]
pub mod sendring;
pub mod signal;
mod task;
#[cfg(test)]
mod test_util;
pub mod time;

pub use builder::{Builder, CrossWake};
pub use driver::kind::DriverKind;
pub use driver::probe::Features;
pub use metrics::{features, metrics, Metrics};
#[doc(hidden)]
pub use pool::PoolMainOutput;
pub use pool::{worker_index, Pool, PoolBuilder, PoolHandle};
pub use runtime::{block_on, Runtime};
pub use scheduler::{spawn, spawn_blocking, yield_now};
pub use task::{JoinError, JoinHandle};

/// Marks `async fn main` as the program's entry point, run on a fresh [`Runtime`].
///
/// Any [`Builder`] setting can be given by name:
/// `#[runtime::main(entries = 4096)]`. The function may return a value (for
/// example `std::io::Result<()>`), which becomes `main`'s return value.
///
/// With `threads = N`, main starts a [`Pool`] of N workers (the other
/// settings apply to every worker's runtime) and runs the body once on
/// each; it returns when every worker's body has returned. The function
/// then returns `()` or a `Result` whose `Ok` and `Err` are `Send`: the
/// first `Err` in worker order is main's result, else worker 0's `Ok`.
///
/// ```
/// #[runtime::main(threads = 2)]
/// async fn main() -> std::io::Result<()> {
///     // Runs twice, once on each worker. A server binds one listener per
///     // worker here (`net::TcpListener::bind_reuseport`).
///     let me = runtime::worker_index().expect("on a pool worker");
///     assert!(me < 2);
///     Ok(())
/// }
/// ```
pub use runtime_macros::main;

/// Marks an `async fn` as a test, run on a fresh [`Runtime`].
///
/// Takes the same optional [`Builder`] settings as [`main`].
pub use runtime_macros::test;

/// The result of an operation that lent a buffer to the kernel: the outcome
/// and the buffer, which comes back whether the operation succeeded or not.
pub type BufResult<T, B> = (std::io::Result<T>, B);
