//! Submitting io_uring operations and awaiting their completions.
//!
//! This is the API every I/O type of this project (`net`, `fs`) is built on,
//! and it is public so that anyone can submit operations the project does
//! not wrap yet. An operation is an SQE plus the **data** it points at
//! (buffers, iovec arrays, socket addresses, paths, output structs). The
//! data moves into the operation when it is submitted and comes back with
//! the [`Completion`] when the kernel is done with it:
//!
//! ```
//! use runtime::op::{io_uring::opcode, Op};
//!
//! # runtime::block_on(async {
//! let (mut fds, buf) = ([0i32; 2], b"ping");
//! // SAFETY: pipe2 fills the two-int array.
//! assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
//! let w = runtime::op::io_uring::types::Fd(fds[1]);
//! // SAFETY: the SQE points only into the Vec's heap buffer, which the op
//! // owns until its completion.
//! let op = unsafe {
//!     Op::submit(buf.to_vec(), |b| opcode::Write::new(w, b.as_ptr(), b.len() as u32).build())
//! };
//! let (completion, buf) = op.await;
//! assert_eq!(completion.result()?, 4);
//! # let _ = buf;
//! # unsafe { libc::close(fds[0]); libc::close(fds[1]); }
//! # Ok::<(), std::io::Error>(())
//! # }).unwrap();
//! ```
//!
//! # What the runtime guarantees
//!
//! - The SQE is pushed at once and submitted with the next batch (one
//!   `io_uring_enter` per runtime tick); its `user_data` is set by the
//!   runtime and must not be relied on.
//! - The data stays alive, at the same heap addresses, until the
//!   operation's last CQE, even if the future is dropped first: it is then
//!   parked inside the runtime, the operation is cancelled
//!   (`IORING_OP_ASYNC_CANCEL`), and the data is dropped when the last CQE
//!   arrives, whatever it says. A cancel races the operation: it may still
//!   complete, in which case its effect happened: bytes that were read are
//!   lost with the buffer, bytes that were written are sent. A descriptor
//!   created by an operation nobody claims (accept, openat, openat2, socket
//!   whose future was dropped, or multishot accept results still queued) is
//!   closed by the runtime with an `IORING_OP_CLOSE`; direct descriptors
//!   (a non-zero `file_index`) are left to their owner.
//! - A cancelled multishot operation that keeps posting CQEs is cancelled
//!   again until it stops.
//! - Dropping the runtime cancels every operation and waits for the kernel
//!   to finish with it before freeing its data; if the kernel does not
//!   finish within the shutdown timeout, the data is leaked, never freed.
//!
//! # Chains and deadlines
//!
//! [`Link`] submits several operations as one kernel chain
//! (`IOSQE_IO_LINK` / `IOSQE_IO_HARDLINK`): each is still an [`Op`] with
//! its own data and result. [`Op::submit_with_timeout`] and
//! [`Link::push_timed`] give an operation a deadline enforced by the
//! kernel (a linked `IORING_OP_LINK_TIMEOUT`, no runtime timer); the
//! [`Timed`] future reports `ErrorKind::TimedOut` when it fired. What the
//! kernel offers (link timeouts, `IOSQE_CQE_SKIP_SUCCESS`, ...) is in
//! [`crate::features`].
//!
//! # What the caller guarantees
//!
//! That the SQE points only at memory owned by the data **through a heap
//! allocation** (the data value itself moves: into the future, then into
//! the runtime if the future is dropped), or at `'static` memory, and at
//! descriptors that stay open until the operation is over. This is the
//! `unsafe` contract of [`Op::submit`] and [`Multishot::submit`].
//!
//! # Typed operations
//!
//! Every operation the project uses is a struct here ([`Read`], [`Recv`],
//! [`Accept`], [`OpenAt`], ...). A raw [`Op::submit`] call states its
//! memory argument at every call site; a typed operation states it once,
//! in its `unsafe impl` of [`Operation`] (or [`MultishotOperation`]), and
//! its users (`net`, `fs`, third parties) build it with safe constructors
//! and `.submit().await` it:
//!
//! ```
//! use runtime::op::{Operation, Read, SharedFd};
//!
//! # runtime::block_on(async {
//! let (r, w) = std::io::pipe()?;
//! std::io::Write::write_all(&mut &w, b"ping")?;
//! let fd = SharedFd::new(r.into());
//! let (n, buf) = Read::new(&fd, Vec::with_capacity(16), u64::MAX).submit().await;
//! assert_eq!(n?, 4);
//! assert_eq!(buf, b"ping");
//! # Ok::<(), std::io::Error>(())
//! # }).unwrap();
//! ```
//!
//! # Design
//!
//! The trait has one job per method, so that a new driver or a new
//! submission path (chains, deadlines) needs no knowledge of any opcode:
//!
//! - [`Operation::sqe`]: the SQE (the io_uring driver);
//! - [`Operation::creates`]: whether a successful result is a new
//!   descriptor, which the runtime closes if nobody takes it (this replaces
//!   guessing it from the SQE's bytes);
//! - [`Operation::complete`]: the result as the caller wants it, with the
//!   buffers handed back;
//! - [`Operation::readiness`] and [`Operation::perform`]: the same
//!   operation as a plain system call, for a readiness (epoll) driver;
//! - [`Operation::perform_nowait`]: an optional first attempt that never
//!   waits, made before the operation goes to the ring or the blocking
//!   pool (a file read the page cache can serve: [`Read::cached_first`]).
//!
//! On the epoll driver ([`crate::DriverKind::Epoll`], where io_uring is
//! refused) [`Operation::submit`] runs the operation with those two
//! (`op/ready.rs`); raw SQEs ([`Op::submit`], [`Multishot::submit`],
//! [`Link`]) and operations whose readiness is
//! [`Readiness::Unsupported`] complete with `EOPNOTSUPP`
//! (`ErrorKind::Unsupported`).
//!
//! The op struct is the operation's data: it moves into the future and,
//! if the future is dropped early, into the runtime, exactly as the data
//! of a raw [`Op`] does, so the lifecycle invariants are the
//! same and live in one place (`driver/lifecycle.rs`).
//!
//! | family | file | operations |
//! | --- | --- | --- |
//! | reads and writes | `op/rw.rs` | [`Read`], [`Write`] (also `READ_FIXED`/`WRITE_FIXED`: [`Read::fixed`], [`Write::fixed`]), [`Readv`], [`Writev`] |
//! | sockets | `op/net.rs` | [`Recv`], [`Send`], [`RecvMsg`], [`SendMsg`], [`SendZc`], [`Accept`], [`AcceptMulti`], [`Connect`], [`Socket`], [`Shutdown`] |
//! | files and paths | `op/fs.rs` | [`OpenAt`], [`Statx`], [`Fsync`], [`Close`], [`UnlinkAt`], [`MkDirAt`], [`RenameAt`] |
//! | provided buffers | `op/ring.rs` | [`RecvRing`], [`SendBundle`] |
//! | waiting | `op/poll.rs` | [`Timeout`], [`PollAdd`], [`PollMulti`], [`Nop`] |
//!
//! A new opcode is a new struct in the file of its family (or a new
//! family file), with its `unsafe impl Operation` and a test in
//! `tests/typed_ops.rs` that runs it both ways.

mod fd;
mod fs;
mod link;
mod net;
mod operation;
mod poll;
pub(crate) mod ready;
mod ring;
mod rw;
mod submit;
mod timed;

pub use fd::SharedFd;
pub use fs::{Close, Fsync, MkDirAt, OpenAt, RenameAt, Statx, UnlinkAt};
pub use link::Link;
pub use net::{
    Accept, AcceptMulti, Connect, Recv, RecvMsg, Send, SendMsg, SendZc, Shutdown, SockAddrBuf,
    Socket,
};
pub use operation::{
    submit_and_wait, Deadline, MultishotOperation, Operation, Readiness, Submitted,
};
pub use poll::{Nop, PollAdd, PollMulti, Timeout};
pub use ring::{RecvMode, RecvRing, SendBundle};
pub use rw::{Read, Readv, Write, Writev};
pub use submit::{direct_slot_free, direct_table, in_flight, Entry, Multishot, Op};
pub use timed::Timed;

pub use crate::driver::lifecycle::{Completion, Creates};

/// The io-uring crate this runtime builds SQEs with, re-exported so that
/// callers build entries with the same version ([`opcode`](io_uring::opcode),
/// [`types`](io_uring::types), [`squeue::Entry`](io_uring::squeue::Entry)).
pub use io_uring;
