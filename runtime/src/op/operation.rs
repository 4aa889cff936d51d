//! The typed-operation traits ([`Operation`], [`MultishotOperation`]),
//! their futures, and how a readiness driver runs them; see the module docs
//! of `runtime::op` for the design.

use std::fmt;
use std::future::Future;
use std::io;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::driver::kind::{AnyDriver, DriverKind};
use crate::driver::lifecycle::{Completion, Creates};
use crate::op::ready::{self, ReadyDeadline, ReadyMulti, ReadyOp};
use crate::op::submit::{Entry, Multishot, Op};
use crate::op::timed::Timed;
use crate::scheduler::{expect_current, Core};

/// How a readiness (epoll) driver runs an operation with
/// [`Operation::perform`].
///
/// `Readable` and `Writable` assume the socket is in non-blocking mode, as
/// a readiness driver keeps its sockets: receives and sends pass
/// `MSG_DONTWAIT`, but `accept` and `connect` have no per-call flag and
/// would wait on a blocking socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// `perform` is a non-blocking system call on this descriptor; when it
    /// fails with `EAGAIN`, wait until the descriptor is readable and call
    /// it again.
    Readable(RawFd),
    /// As `Readable`, waiting until the descriptor is writable.
    Writable(RawFd),
    /// `perform` never waits (it creates a socket, shuts one down, ...):
    /// call it at once.
    Now,
    /// `perform` may block (files, paths): run it where blocking is fine.
    /// The operation stays owned (by its future or the runtime) until
    /// `perform` returned.
    Blocking,
    /// The operation exists only on io_uring (provided buffers, registered
    /// buffers or descriptors, zero-copy sends, ...): a readiness driver
    /// answers `ErrorKind::Unsupported`.
    Unsupported,
}

/// One io_uring operation described as data: the SQE it becomes, what its
/// result is, and how to run it without io_uring.
///
/// # Safety
///
/// Implementing this trait promises, for every value:
///
/// - every pointer in the SQE that [`sqe`](Self::sqe) returns points into
///   memory owned by `self` **through a heap allocation** (a `Vec`'s or a
///   `Box`'s memory, an [`IoBuf`](crate::buf::IoBuf)'s stable memory: the
///   struct itself moves, into the future and then into the runtime) or
///   into `'static` memory, and the memory stays valid and is not otherwise
///   accessed while the kernel may use it (until [`complete`](Self::complete)
///   or the runtime drops the value after the last CQE);
/// - every descriptor the SQE names stays open while `self` lives (the
///   struct holds a [`SharedFd`](crate::op::SharedFd) clone, or the
///   descriptor is a constant such as `AT_FDCWD`);
/// - the SQE sets no link flags (`IOSQE_IO_LINK`, `IOSQE_IO_HARDLINK`):
///   chains set them;
/// - [`perform`](Self::perform) touches only the same memory and
///   descriptors, and no thread-local or reference-counted state, so that a
///   readiness driver may run a [`Readiness::Blocking`] operation on another
///   thread while the value stays parked;
/// - [`perform_nowait`](Self::perform_nowait) touches only the same memory
///   and descriptors (it runs on the runtime's thread, before
///   [`sqe`](Self::sqe) and `perform`), never waits, and leaves the value
///   such that its SQE and `perform` do only the rest of the work.
///
/// [`creates`](Self::creates) is not a safety matter (a wrong answer leaks
/// or double-closes a descriptor), but it must be right for correctness.
pub unsafe trait Operation: 'static {
    /// What the operation's future gives.
    type Output;

    /// Builds the SQE (its `user_data` is set by the runtime). Called once,
    /// on the thread of the runtime that submits it.
    fn sqe(&mut self) -> Entry;

    /// Whether a successful result is a new descriptor the runtime must
    /// close if nobody takes it. The default: nothing to close.
    fn creates(&self) -> Creates {
        Creates::Nothing
    }

    /// Turns the operation's completion into its output, handing back the
    /// memory the kernel is now done with.
    fn complete(self, completion: Completion) -> Self::Output
    where
        Self: Sized;

    /// How a readiness driver runs the operation. The default:
    /// [`Readiness::Unsupported`].
    fn readiness(&self) -> Readiness {
        Readiness::Unsupported
    }

    /// Performs the operation as a plain system call and returns what its
    /// CQE would carry: the non-negative result, or the error (`EAGAIN`:
    /// not ready, see [`readiness`](Self::readiness)). The default:
    /// `ErrorKind::Unsupported`.
    fn perform(&mut self) -> io::Result<u32> {
        Err(unsupported_on_readiness())
    }

    /// A first attempt at the operation here and now that never waits,
    /// made by [`submit`](Self::submit) before the operation goes to the
    /// ring or (on the epoll driver) to the blocking pool: `Some(result)`
    /// when it is done, and `result` is what [`complete`](Self::complete)
    /// gets; `None` to go the usual way. An attempt that did part of the
    /// work (a read that got the first bytes it asked for) returns `None`
    /// and leaves the operation so that its SQE and `perform` do the rest
    /// and `complete` counts both parts. The default: `None`, nothing
    /// tried.
    ///
    /// The runtime calls it at most once per operation, and not at all
    /// past a budget of such completions between two turns of the ring
    /// (so that a task looping over operations that complete at once
    /// still lets the others run), nor when
    /// [`Builder::nowait_reads`](crate::Builder::nowait_reads) turned it
    /// off. [`Read::cached_first`](crate::op::Read::cached_first) uses it
    /// for reads the page cache can serve.
    fn perform_nowait(&mut self) -> Option<io::Result<u32>> {
        None
    }

    /// For a readiness driver: whether the successful [`perform`](Self::perform)
    /// result `n` means the descriptor had nothing more to read when the
    /// call returned, **if** the descriptor is a stream socket (the driver
    /// checks that): a plain receive that got fewer bytes than it asked
    /// for, as a stream socket's receive stops short only on an empty
    /// queue. The driver then waits for the next edge before the next
    /// read instead of asking and being told `EAGAIN` (tokio does the
    /// same). A wrong `true` only delays a read until more bytes come; the
    /// default is `false`.
    #[doc(hidden)]
    fn drained(&self, _n: u32) -> bool {
        false
    }

    /// Runs the operation here and now with [`perform`](Self::perform)
    /// (plain system calls, as a readiness driver does once the descriptor
    /// is ready) and completes it. It blocks where the system call blocks
    /// (a file read, an `accept` on a blocking listener); a socket that is
    /// not ready gives `ErrorKind::WouldBlock`. Needs no runtime.
    ///
    /// ```
    /// use runtime::op::{Operation, Recv, Send, SharedFd};
    ///
    /// let (a, b) = std::os::unix::net::UnixStream::pair()?;
    /// let (a, b) = (SharedFd::new(a.into()), SharedFd::new(b.into()));
    /// let (sent, _) = Send::new(&a, b"hi".to_vec()).perform_now();
    /// assert_eq!(sent?, 2);
    /// let (got, buf) = Recv::new(&b, Vec::with_capacity(8)).perform_now();
    /// assert_eq!((got?, &buf[..]), (2, &b"hi"[..]));
    /// // Nothing more to read: not ready.
    /// let (again, _) = Recv::new(&b, Vec::with_capacity(8)).perform_now();
    /// assert_eq!(again.unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    fn perform_now(mut self) -> Self::Output
    where
        Self: Sized,
    {
        let result = self.perform();
        self.complete(Completion::from_io(result))
    }

    /// Pushes the SQE with the runtime's next batch and returns the future
    /// of the output. Dropping the future before it completes cancels the
    /// operation; the value stays with the runtime until the kernel's last
    /// word on it.
    ///
    /// On the epoll driver ([`crate::DriverKind::Epoll`]) the future runs
    /// the operation as [`readiness`](Self::readiness) says: `perform`
    /// when the descriptor is ready, on the blocking pool for
    /// [`Readiness::Blocking`], and `EOPNOTSUPP` (`ErrorKind::Unsupported`)
    /// for [`Readiness::Unsupported`]. Dropping it before it ran means it
    /// never runs.
    ///
    /// # Panics
    ///
    /// If no runtime is running on this thread.
    fn submit(self) -> Submitted<Self>
    where
        Self: Sized,
    {
        Submitted::new(self)
    }

    /// Like [`submit`](Self::submit), with a deadline enforced by the
    /// kernel (a linked `IORING_OP_LINK_TIMEOUT`): if the operation has not
    /// completed `timeout` after it started, it is cancelled and completes
    /// with `ETIMEDOUT` (`ErrorKind::TimedOut`), its memory handed back by
    /// [`complete`](Self::complete) as for any error.
    ///
    /// On the epoll driver the deadline is a runtime timer: an operation
    /// still waiting for readiness when it fires completes with
    /// `ETIMEDOUT`; one running on the blocking pool cannot be stopped and
    /// gives its own result.
    ///
    /// # Panics
    ///
    /// If no runtime is running on this thread.
    fn submit_with_timeout(self, timeout: Duration) -> Deadline<Self>
    where
        Self: Sized,
    {
        Deadline::start(self, timeout)
    }
}

/// A multishot io_uring operation described as data: one SQE, many CQEs
/// (accepts, receives into provided buffers, polls).
///
/// # Safety
///
/// As for [`Operation`], for as long as the kernel may post CQEs for the
/// operation (until the one without `IORING_CQE_F_MORE`).
pub unsafe trait MultishotOperation: 'static {
    /// Builds the SQE (its `user_data` is set by the runtime).
    fn sqe(&mut self) -> Entry;

    /// Whether each successful result is a new descriptor, closed by the
    /// runtime if it is never handed out. The default: nothing to close.
    fn creates(&self) -> Creates {
        Creates::Nothing
    }

    /// How a readiness (epoll) driver runs the operation: each time the
    /// descriptor is ready, [`perform`](Self::perform) gives one result
    /// (until `EAGAIN`). The default: [`Readiness::Unsupported`] (the
    /// stream then yields one `EOPNOTSUPP` completion and ends).
    fn readiness(&self) -> Readiness {
        Readiness::Unsupported
    }

    /// One result of the operation as a plain non-blocking system call
    /// (see [`Operation::perform`]). The default: `ErrorKind::Unsupported`.
    fn perform(&mut self) -> io::Result<u32> {
        Err(unsupported_on_readiness())
    }

    /// Pushes the SQE with the runtime's next batch and returns the stream
    /// of its completions. On the epoll driver, the stream performs the
    /// operation each time the descriptor is ready (see
    /// [`readiness`](Self::readiness)).
    ///
    /// # Panics
    ///
    /// If no runtime is running on this thread.
    fn start(self) -> Multishot<Self>
    where
        Self: Sized,
    {
        Multishot::start(self)
    }
}

impl<T: Operation> Op<T> {
    /// The raw future of a typed operation: its SQE is pushed now, and the
    /// future gives the [`Completion`] and the operation back (see
    /// [`Operation::submit`] for the future of its output).
    ///
    /// # Panics
    ///
    /// If no runtime is running on this thread.
    pub fn start(op: T) -> Op<T>
    where
        T: Operation,
    {
        Op::start_on(expect_current("runtime::op::Operation::submit"), op)
    }

    /// [`Op::start`] on `core`.
    fn start_on(core: Rc<Core>, mut op: T) -> Op<T> {
        let entry = op.sqe();
        let creates = op.creates();
        // SAFETY: `T: Operation` promises that the SQE points only into heap
        // memory owned by `op` (or 'static memory) and names descriptors
        // `op` keeps open; `op` is kept by this Op or parked in the driver
        // until the last CQE.
        let key = unsafe { core.driver.borrow_mut().submit(entry, false, creates) };
        Op {
            core,
            key,
            data: Some(op),
        }
    }
}

impl<T: MultishotOperation> Multishot<T> {
    /// Starts a typed multishot operation (see
    /// [`MultishotOperation::start`]).
    ///
    /// # Panics
    ///
    /// If no runtime is running on this thread.
    pub fn start(mut op: T) -> Multishot<T>
    where
        T: MultishotOperation,
    {
        let core = expect_current("runtime::op::MultishotOperation::start");
        if core.driver.borrow().kind() == DriverKind::Epoll {
            if let Some(ready) = ReadyMulti::new(op.readiness(), <T as MultishotOperation>::perform)
            {
                return Multishot {
                    core,
                    key: usize::MAX,
                    data: Some(op),
                    ended: false,
                    ready: Some(ready),
                };
            }
        }
        let entry = op.sqe();
        let creates = op.creates();
        // SAFETY: `T: MultishotOperation` promises that the SQE points only
        // into memory owned by `op` through heap allocations (or 'static)
        // and names descriptors it keeps open, for as long as CQEs may come;
        // `op` is kept by this stream or parked in the driver until then.
        let key = unsafe { core.driver.borrow_mut().submit(entry, true, creates) };
        Multishot {
            core,
            key,
            data: Some(op),
            ended: false,
            ready: None,
        }
    }
}

impl<T: Operation> Timed<T> {
    /// Submits a typed op with a deadline; the body of
    /// [`Operation::submit_with_timeout`].
    pub(crate) fn start(mut op: T, timeout: Duration) -> Timed<T>
    where
        T: Operation,
    {
        let core = expect_current("runtime::op::Operation::submit_with_timeout");
        let entry = op.sqe();
        let creates = op.creates();
        // SAFETY: `T: Operation` promises what `Op::submit` asks of the SQE.
        unsafe { Timed::submit_entry(core, op, entry, creates, timeout) }
    }
}

/// Submits a typed operation and blocks the thread in the kernel
/// (`io_uring_enter`) until it completes, then returns its output: the
/// synchronous form, for operations that complete at once (a shutdown of a
/// direct descriptor, which has no number for `shutdown(2)`). Completions of
/// other operations that arrive meanwhile are stored and their tasks woken
/// as usual; nothing else runs until this returns, so an operation that
/// waits for another task would wait forever. On the epoll driver the
/// operation is performed here, waiting in `poll(2)` if its descriptor is
/// not ready.
///
/// ```
/// use runtime::op::{Nop, submit_and_wait};
/// # runtime::block_on(async {
/// submit_and_wait(Nop)?;
/// # Ok::<(), std::io::Error>(())
/// # }).unwrap();
/// ```
///
/// # Panics
///
/// If no runtime is running on this thread.
pub fn submit_and_wait<O: Operation>(op: O) -> O::Output {
    let core = expect_current("runtime::op::submit_and_wait");
    if core.driver.borrow().kind() == DriverKind::Epoll {
        return ready::perform_blocking(op);
    }
    let mut op = Op::start_on(core, op);
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    loop {
        if let Poll::Ready((completion, op)) = Pin::new(&mut op).poll(&mut cx) {
            return op.complete(completion);
        }
        op.core.driver.borrow_mut().turn(true, None);
    }
}

/// The future of a typed [`Operation`], made by [`Operation::submit`].
#[must_use = "an operation is cancelled when its future is dropped; .await it"]
pub struct Submitted<O: Operation> {
    op: Way<O>,
}

/// How a typed operation runs: on the ring, or on the epoll driver; or it
/// was done at once ([`Operation::perform_nowait`]) and its output waits
/// for the first poll.
enum Way<O: Operation> {
    Ring(Op<O>),
    Ready(ReadyOp<O>),
    Done(Option<O::Output>),
}

impl<O: Operation> Submitted<O> {
    fn new(op: O) -> Submitted<O> {
        let core = expect_current("runtime::op::Operation::submit");
        // Asked before `sqe` is called: building the SQE may change the
        // operation (a close marks itself submitted), which must not
        // happen on the epoll driver.
        let ring = matches!(*core.driver.borrow(), AnyDriver::Uring(_));
        let op = if ring {
            let mut op = op;
            if core.nowait_allowed() {
                if let Some(result) = op.perform_nowait() {
                    core.nowait_done();
                    let out = op.complete(Completion::from_io(result));
                    return Submitted {
                        op: Way::Done(Some(out)),
                    };
                }
            }
            Way::Ring(Op::start_on(core, op))
        } else {
            Way::Ready(ReadyOp::new(core, op))
        };
        Submitted { op }
    }

    /// The future of a typed op whose raw future is `op` (a chain's).
    pub(crate) fn from_op(op: Op<O>) -> Submitted<O> {
        Submitted { op: Way::Ring(op) }
    }
}

// The output of an operation done at once is only ever moved out whole,
// never pinned, and the other ways are `Unpin` themselves.
impl<O: Operation> Unpin for Submitted<O> {}

impl<O: Operation> Future for Submitted<O> {
    type Output = O::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<O::Output> {
        match &mut self.op {
            Way::Ring(op) => match Pin::new(op).poll(cx) {
                Poll::Ready((completion, op)) => Poll::Ready(op.complete(completion)),
                Poll::Pending => Poll::Pending,
            },
            Way::Ready(op) => op.poll_op(cx),
            Way::Done(out) => Poll::Ready(
                out.take()
                    .expect("a runtime::op future polled after it completed"),
            ),
        }
    }
}

impl<O: Operation> fmt::Debug for Submitted<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.op {
            Way::Ring(op) => f.debug_struct("Submitted").field("op", op).finish(),
            Way::Ready(_) => f
                .debug_struct("Submitted")
                .field("driver", &"epoll")
                .finish(),
            Way::Done(_) => f
                .debug_struct("Submitted")
                .field("done_at_once", &true)
                .finish(),
        }
    }
}

/// The future of a typed [`Operation`] with a kernel deadline, made by
/// [`Operation::submit_with_timeout`] or
/// [`Link::push_op_timed`](crate::op::Link::push_op_timed).
#[must_use = "an operation is cancelled when its future is dropped; .await it"]
pub struct Deadline<O: Operation> {
    timed: TimedWay<O>,
    fired: bool,
}

/// How a typed operation with a deadline runs: a chain on the ring, or an
/// operation and a timer on the epoll driver.
enum TimedWay<O: Operation> {
    Ring(Timed<O>),
    Ready(ReadyDeadline<O>),
}

impl<O: Operation> Deadline<O> {
    /// The body of [`Operation::submit_with_timeout`].
    fn start(op: O, timeout: Duration) -> Deadline<O> {
        let core = expect_current("runtime::op::Operation::submit_with_timeout");
        if core.driver.borrow().kind() == DriverKind::IoUring {
            return Deadline::from_timed(Timed::start(op, timeout));
        }
        let sleep = crate::time::sleep(timeout);
        Deadline {
            timed: TimedWay::Ready(ReadyDeadline::new(ReadyOp::new(core, op), sleep)),
            fired: false,
        }
    }

    pub(crate) fn from_timed(timed: Timed<O>) -> Deadline<O> {
        Deadline {
            timed: TimedWay::Ring(timed),
            fired: false,
        }
    }

    /// Whether the deadline fired: the operation was cancelled by its link
    /// timeout, and its output carries `ETIMEDOUT`. `false` until the
    /// future has completed, and `false` if the operation itself failed
    /// with `ETIMEDOUT` (a TCP connection the kernel gave up on, say):
    /// poll the future by reference to ask afterwards, and tell the two
    /// apart.
    ///
    /// ```
    /// use runtime::op::{Operation, Recv, SharedFd};
    /// use std::time::Duration;
    ///
    /// # runtime::block_on(async {
    /// let (a, _b) = std::os::unix::net::UnixStream::pair()?;
    /// let fd = SharedFd::new(a.into());
    /// let mut read = Recv::new(&fd, Vec::with_capacity(8)).submit_with_timeout(Duration::from_millis(5));
    /// let (res, _buf) = (&mut read).await;
    /// assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::ETIMEDOUT));
    /// assert!(read.timed_out());
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn timed_out(&self) -> bool {
        self.fired
    }
}

impl<O: Operation> Future for Deadline<O> {
    type Output = O::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<O::Output> {
        let timed = match &mut self.timed {
            TimedWay::Ring(timed) => timed,
            TimedWay::Ready(ready) => {
                let (out, fired) = std::task::ready!(ready.poll_deadline(cx));
                self.fired = fired;
                return Poll::Ready(out);
            }
        };
        match Pin::new(timed).poll(cx) {
            Poll::Ready((Ok(completion), op)) => Poll::Ready(op.complete(completion)),
            Poll::Ready((Err(e), op)) => {
                self.fired = true;
                let errno = e.raw_os_error().unwrap_or(libc::ETIMEDOUT);
                Poll::Ready(op.complete(Completion::new(-errno, 0)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<O: Operation> fmt::Debug for Deadline<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Deadline");
        match &self.timed {
            TimedWay::Ring(timed) => d.field("timed", timed),
            TimedWay::Ready(_) => d.field("driver", &"epoll"),
        };
        d.field("fired", &self.fired).finish()
    }
}

/// The error of an io_uring-only operation on a readiness driver.
pub(crate) fn unsupported_on_readiness() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "this operation exists only on the io_uring driver",
    )
}

/// The result of a system call returning `ssize_t`/`int`, as a CQE would
/// carry it.
pub(crate) fn syscall_result(ret: isize) -> io::Result<u32> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as u32)
    }
}
