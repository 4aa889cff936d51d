//! Typed operations on the epoll driver (see `driver/epoll.rs`): the
//! future of one operation ([`ReadyOp`]), with a deadline
//! ([`ReadyDeadline`]), a multishot operation performed once per readiness
//! ([`ReadyMulti`]), blocking operations on the pool ([`ParkedJob`]), and
//! the synchronous form ([`perform_blocking`]).
//!
//! A `ReadyOp` owns its operation, and nothing but this thread touches it,
//! except while a [`Readiness::Blocking`] operation runs on the blocking
//! pool: then the operation sits in a heap allocation whose address the
//! pool thread holds, and this side leaves it alone until the pool says
//! it is done (or keeps it parked in the driver if the future goes). So
//! dropping a future means what it means on io_uring: an operation that
//! has not run never runs (a read takes no bytes, an accept creates no
//! descriptor), one running on the pool finishes first, and a descriptor
//! it created for nobody is closed.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::driver::epoll::{Direction, EpollDriver};
use crate::driver::lifecycle::{Completion, Creates, Parked};
use crate::op::operation::{Operation, Readiness};
use crate::scheduler::Core;
use crate::time::Sleep;

/// Runs `f` on the epoll driver of `core`, which has one.
fn with_epoll<R>(core: &Core, f: impl FnOnce(&mut EpollDriver) -> R) -> R {
    let mut driver = core.driver.borrow_mut();
    f(driver
        .epoll()
        .expect("a readiness operation on a runtime without the epoll driver"))
}

/// The direction and descriptor a readiness operation waits on.
fn wait_of(readiness: Readiness) -> Option<(RawFd, Direction)> {
    match readiness {
        Readiness::Readable(fd) => Some((fd, Direction::Read)),
        Readiness::Writable(fd) => Some((fd, Direction::Write)),
        _ => None,
    }
}

/// The `EOPNOTSUPP` result of an io_uring-only operation.
fn not_supported() -> io::Result<u32> {
    Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
}

/// One attempt at a readiness operation: `Ready` with the system call's
/// result, or `Pending` with the waker registered for the next edge.
fn attempt(
    core: &Core,
    fd: RawFd,
    dir: Direction,
    cx: &mut Context<'_>,
    mut perform: impl FnMut() -> io::Result<u32>,
) -> Poll<io::Result<u32>> {
    loop {
        match with_epoll(core, |e| e.poll_ready(fd, dir, cx.waker())) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => {}
        }
        match perform() {
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                if with_epoll(core, |e| e.clear_ready(fd, dir, cx.waker())) {
                    return Poll::Pending;
                }
                // A descriptor epoll cannot wait on: say so.
                return Poll::Ready(Err(e));
            }
            res => return Poll::Ready(res),
        }
    }
}

/// The future side of a typed [`Operation`] on the epoll driver.
pub(crate) struct ReadyOp<O: Operation> {
    core: Rc<Core>,
    state: State<O>,
    /// Counted in the driver's operations in flight.
    counted: bool,
    /// Counted in the driver's operations started.
    begun: bool,
}

enum State<O> {
    /// Owned here; performed when polled.
    Idle(O),
    /// Running on the blocking pool: the operation is in the heap
    /// allocation `op` (a leaked `Box`), which the pool thread uses until
    /// `job` is done. `creates` was asked before it went.
    Pool {
        op: NonNull<O>,
        job: Arc<JobSlot>,
        creates: Creates,
    },
    /// The output was handed out.
    Done,
}

// The operation is only ever pointed at through its heap allocations
// (`Operation`'s contract) or through the `Pool` box, so moving the future
// is fine whatever `O` is.
impl<O: Operation> Unpin for ReadyOp<O> {}

impl<O: Operation> ReadyOp<O> {
    /// The future of `op` on `core`, which runs the epoll driver.
    pub(crate) fn new(core: Rc<Core>, op: O) -> ReadyOp<O> {
        ReadyOp {
            core,
            state: State::Idle(op),
            counted: false,
            begun: false,
        }
    }

    fn count(&mut self) {
        if !self.counted {
            self.counted = true;
            with_epoll(&self.core, EpollDriver::op_waiting);
        }
    }

    fn uncount(&mut self) {
        if self.counted {
            self.counted = false;
            if let Ok(mut driver) = self.core.driver.try_borrow_mut() {
                if let Some(e) = driver.epoll() {
                    e.op_done_waiting();
                }
            }
        }
    }

    /// Completes `op` with `result` (outside any borrow of the driver:
    /// `complete` may make a `SharedFd`).
    fn finish(&mut self, op: O, result: io::Result<u32>) -> O::Output {
        self.state = State::Done;
        if let Ok(mut driver) = self.core.driver.try_borrow_mut() {
            if let Some(e) = driver.epoll() {
                if self.counted {
                    e.op_done_waiting();
                }
                e.op_completed();
            }
        }
        self.counted = false;
        op.complete(Completion::from_io(result))
    }

    /// Polls the operation.
    pub(crate) fn poll_op(&mut self, cx: &mut Context<'_>) -> Poll<O::Output> {
        loop {
            match &mut self.state {
                State::Idle(op) => {
                    if !with_epoll(&self.core, EpollDriver::spend_budget) {
                        // Others' turn first (see `SYNC_BUDGET`); nothing ran.
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    if !self.begun {
                        self.begun = true;
                        with_epoll(&self.core, EpollDriver::op_started);
                    }
                    let readiness = op.readiness();
                    let result = match readiness {
                        Readiness::Now => op.perform(),
                        Readiness::Unsupported => not_supported(),
                        Readiness::Readable(_) | Readiness::Writable(_) => {
                            let (fd, dir) = wait_of(readiness).expect("a readiness wait");
                            match attempt(&self.core, fd, dir, cx, || op.perform()) {
                                Poll::Ready(Ok(n)) if dir == Direction::Read && op.drained(n) => {
                                    with_epoll(&self.core, |e| e.mark_drained(fd));
                                    Ok(n)
                                }
                                Poll::Ready(res) => res,
                                Poll::Pending => {
                                    self.count();
                                    return Poll::Pending;
                                }
                            }
                        }
                        Readiness::Blocking => {
                            // A read the page cache can serve needs no
                            // pool thread (the budget above was spent on
                            // it already).
                            let at_once = if self.core.nowait_enabled() {
                                op.perform_nowait()
                            } else {
                                None
                            };
                            match at_once {
                                Some(result) => {
                                    self.core.nowait_done();
                                    result
                                }
                                None => {
                                    self.start_on_pool();
                                    continue;
                                }
                            }
                        }
                    };
                    let State::Idle(op) = std::mem::replace(&mut self.state, State::Done) else {
                        unreachable!("matched above")
                    };
                    return Poll::Ready(self.finish(op, result));
                }
                State::Pool { op, job, .. } => {
                    let (op, polled) = (*op, job.poll(cx.waker()));
                    let result = match polled {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(result) => result,
                    };
                    // SAFETY: the pool is done with the operation (the job
                    // ran or was dropped, and its slot says so under the
                    // mutex the pool thread released), so this side owns
                    // the box made by `start_on_pool` again.
                    let op = unsafe { *Box::from_raw(op.as_ptr()) };
                    let result = result.unwrap_or_else(|| Err(job_not_run()));
                    return Poll::Ready(self.finish(op, result));
                }
                State::Done => panic!("a runtime::op future polled after it completed"),
            }
        }
    }

    /// Moves the operation to the heap and hands it to the blocking pool.
    fn start_on_pool(&mut self) {
        let State::Idle(op) = std::mem::replace(&mut self.state, State::Done) else {
            unreachable!("only an idle operation starts")
        };
        let creates = op.creates();
        let op = NonNull::from(Box::leak(Box::new(op)));
        let job = Arc::new(JobSlot::default());
        let task = PoolTask {
            op: SendPtr(op),
            done: Completer {
                slot: job.clone(),
                result: None,
            },
        };
        self.count();
        self.state = State::Pool { op, job, creates };
        self.core.blocking.execute(Box::new(move || task.run()));
    }

    /// Takes the operation back if it is not running on the pool (a
    /// deadline fired); `None` if it is, or is done.
    fn take_idle(&mut self) -> Option<O> {
        if !matches!(self.state, State::Idle(_)) {
            return None;
        }
        let State::Idle(op) = std::mem::replace(&mut self.state, State::Done) else {
            unreachable!("checked above")
        };
        self.uncount();
        Some(op)
    }
}

impl<O: Operation> Drop for ReadyOp<O> {
    fn drop(&mut self) {
        self.uncount();
        let State::Pool { op, job, creates } = std::mem::replace(&mut self.state, State::Done)
        else {
            // Idle: never ran, nothing else holds it; it is dropped here.
            return;
        };
        let parked = ParkedJob {
            op: op.cast(),
            release: release_box::<O>,
            job,
            creates,
        };
        match self.core.driver.try_borrow_mut() {
            Ok(mut driver) => match driver.epoll() {
                Some(e) => e.park(parked),
                None => parked.leak(),
            },
            // Never expected (futures are not dropped under the driver's
            // borrow); the pool may still use the memory: leak it.
            Err(_) => parked.leak(),
        }
    }
}

/// The error of a blocking operation the pool never ran (no thread could
/// be started, or the runtime shut down).
fn job_not_run() -> io::Error {
    io::Error::from_raw_os_error(libc::ECANCELED)
}

/// A pointer to an operation, handed to the blocking pool.
struct SendPtr<O>(NonNull<O>);

// SAFETY: the pool thread is the only one that touches the operation
// between `start_on_pool` and the job's completion (the runtime side keeps
// the pointer but does not use it until `JobSlot` says the job is done,
// under a mutex that orders the two), and `Operation::perform` promises to
// touch only the operation's own memory and descriptors, no thread-local
// or reference-counted state (a `SharedFd` inside is only read for its
// number, through a shared reference; its counts are not changed there).
// So moving the pointer to another thread is sound though `O` is not
// `Send`.
unsafe impl<O> Send for SendPtr<O> {}

impl<O> SendPtr<O> {
    fn get(&self) -> NonNull<O> {
        self.0
    }
}

/// The job a blocking operation becomes.
struct PoolTask<O> {
    op: SendPtr<O>,
    done: Completer,
}

impl<O: Operation> PoolTask<O> {
    fn run(mut self) {
        let mut op = self.op.get();
        // SAFETY: see `SendPtr`: the allocation lives (parked, or leaked)
        // until `done` reports, and nothing else uses it meanwhile.
        let result = unsafe { op.as_mut() }.perform();
        self.done.result = Some(result);
        // `done` drops here and reports.
    }
}

/// Where a blocking job reports: its result (`None`: it never ran) once
/// done, and the waker to wake then.
#[derive(Default)]
pub(crate) struct JobSlot {
    state: Mutex<JobState>,
}

#[derive(Default)]
struct JobState {
    done: Option<Option<io::Result<u32>>>,
    waker: Option<Waker>,
}

impl JobSlot {
    fn lock(&self) -> std::sync::MutexGuard<'_, JobState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The result once the job is done; else registers `waker`.
    fn poll(&self, waker: &Waker) -> Poll<Option<io::Result<u32>>> {
        let mut state = self.lock();
        if let Some(result) = state.done.take() {
            return Poll::Ready(result);
        }
        match &state.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => state.waker = Some(waker.clone()),
        }
        Poll::Pending
    }

    fn is_done(&self) -> bool {
        self.lock().done.is_some()
    }

    fn take(&self) -> Option<io::Result<u32>> {
        self.lock().done.take().flatten()
    }
}

/// Reports a job's end when dropped: after it ran, or if the pool drops it
/// unrun.
struct Completer {
    slot: Arc<JobSlot>,
    result: Option<io::Result<u32>>,
}

impl Drop for Completer {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.slot.lock();
            state.done = Some(self.result.take());
            state.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// A blocking operation whose future went while the pool ran it.
pub(crate) struct ParkedJob {
    /// The operation's box (see `State::Pool`), type-erased.
    op: NonNull<()>,
    /// Turns `op` back into its box, as resources to drop.
    release: unsafe fn(NonNull<()>) -> Parked,
    job: Arc<JobSlot>,
    creates: Creates,
}

/// # Safety
///
/// `op` is the pointer of a `Box<O>` leaked by `start_on_pool`, which the
/// pool no longer uses.
unsafe fn release_box<O: 'static>(op: NonNull<()>) -> Parked {
    // SAFETY: forwarded from the caller.
    let op = unsafe { Box::from_raw(op.cast::<O>().as_ptr()) };
    Box::new(op)
}

impl ParkedJob {
    /// Whether the pool is done with the operation.
    pub(crate) fn is_done(&self) -> bool {
        self.job.is_done()
    }

    /// The operation back, once [`is_done`](Self::is_done), to be dropped
    /// outside the driver's borrow; a descriptor it created for nobody is
    /// closed here.
    pub(crate) fn release(self) -> Parked {
        if let Some(Ok(fd)) = self.job.take() {
            if self.creates == Creates::Fd {
                // SAFETY: the operation created this descriptor and its
                // future is gone: nobody else has it.
                unsafe { libc::close(fd as RawFd) };
            }
        }
        // SAFETY: the pool is done with the box (`is_done`).
        unsafe { (self.release)(self.op) }
    }

    /// Gives up on the operation: its memory is never freed (the pool may
    /// still use it).
    pub(crate) fn leak(self) {
        std::mem::forget(self);
    }
}

/// [`Operation::submit_with_timeout`] on the epoll driver: the operation
/// and a runtime timer; when the timer fires first, an operation that has
/// not run is completed with `ETIMEDOUT` (a blocking one on the pool
/// cannot be stopped: it finishes, and its own result is given).
pub(crate) struct ReadyDeadline<O: Operation> {
    op: ReadyOp<O>,
    sleep: Sleep,
}

impl<O: Operation> ReadyDeadline<O> {
    pub(crate) fn new(op: ReadyOp<O>, sleep: Sleep) -> ReadyDeadline<O> {
        ReadyDeadline { op, sleep }
    }

    /// The output and whether the deadline fired.
    pub(crate) fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<(O::Output, bool)> {
        if let Poll::Ready(out) = self.op.poll_op(cx) {
            return Poll::Ready((out, false));
        }
        if Pin::new(&mut self.sleep).poll(cx).is_ready() {
            if let Some(op) = self.op.take_idle() {
                let out = op.complete(Completion::new(-libc::ETIMEDOUT, 0));
                return Poll::Ready((out, true));
            }
        }
        Poll::Pending
    }
}

/// A multishot operation on the epoll driver: `perform` once per
/// readiness, each success one result (the multishot accept of
/// `net::Incoming`). Nothing is in the kernel: dropping it drops it.
pub(crate) struct ReadyMulti<T> {
    perform: fn(&mut T) -> io::Result<u32>,
    fd: RawFd,
    dir: Direction,
    cancelled: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl<T> ReadyMulti<T> {
    /// The multishot form of `perform` waiting as `readiness` says; `None`
    /// if that is no readiness wait (the operation is io_uring-only).
    pub(crate) fn new(
        readiness: Readiness,
        perform: fn(&mut T) -> io::Result<u32>,
    ) -> Option<ReadyMulti<T>> {
        let (fd, dir) = wait_of(readiness)?;
        Some(ReadyMulti {
            perform,
            fd,
            dir,
            cancelled: Cell::new(false),
            waker: Cell::new(None),
        })
    }

    /// The next result, and whether it is the last (only after a cancel).
    pub(crate) fn poll_next(
        &mut self,
        core: &Core,
        data: &mut T,
        cx: &mut Context<'_>,
    ) -> Poll<(Completion, bool)> {
        if self.cancelled.get() {
            return Poll::Ready((Completion::new(-libc::ECANCELED, 0), true));
        }
        if !with_epoll(core, EpollDriver::spend_budget) {
            // Others' turn first (see `SYNC_BUDGET`); nothing ran.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let perform = self.perform;
        match attempt(core, self.fd, self.dir, cx, || perform(data)) {
            Poll::Ready(res) => Poll::Ready((Completion::from_io(res), false)),
            Poll::Pending => {
                let waker = match self.waker.take() {
                    Some(w) if w.will_wake(cx.waker()) => w,
                    _ => cx.waker().clone(),
                };
                self.waker.set(Some(waker));
                Poll::Pending
            }
        }
    }

    /// Ends the stream: its next result is `ECANCELED`, the last.
    pub(crate) fn cancel(&self) {
        self.cancelled.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

/// [`submit_and_wait`](crate::op::submit_and_wait) on the epoll driver:
/// performs the operation on this thread, waiting in `poll(2)` for a
/// descriptor that is not ready.
pub(crate) fn perform_blocking<O: Operation>(mut op: O) -> O::Output {
    let result = loop {
        let readiness = op.readiness();
        let res = match readiness {
            Readiness::Unsupported => not_supported(),
            _ => op.perform(),
        };
        match res {
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                let Some((fd, dir)) = wait_of(readiness) else {
                    break Err(e);
                };
                let events = match dir {
                    Direction::Read => libc::POLLIN,
                    Direction::Write => libc::POLLOUT,
                };
                let mut pfd = libc::pollfd {
                    fd,
                    events,
                    revents: 0,
                };
                // SAFETY: one live pollfd; the operation keeps `fd` open.
                unsafe { libc::poll(&mut pfd, 1, -1) };
            }
            res => break res,
        }
    };
    op.complete(Completion::from_io(result))
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::io::Write;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::{Duration, Instant};

    use crate::op::{in_flight, Operation, Read, Recv, SharedFd};
    use crate::{Builder, DriverKind};

    /// Polls `fut` once.
    fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
        let waker = std::task::Waker::noop();
        Pin::new(fut).poll(&mut Context::from_waker(waker))
    }

    #[test]
    fn blocking_ops_run_on_the_pool_and_dropped_ones_stay_parked_until_done() {
        let rt = Builder::new().driver(DriverKind::Epoll).build().unwrap();
        rt.block_on(async {
            let (r, mut w) = std::io::pipe().unwrap();
            let r = SharedFd::new(r.into());
            let mut read = Box::pin(Read::new(&r, Vec::with_capacity(8), u64::MAX).submit());
            assert!(poll_once(&mut read).is_pending());
            // The pool thread is in read(2), into the op's buffer.
            drop(read);
            assert_eq!(in_flight(), 1);
            w.write_all(b"late").unwrap();
            let deadline = Instant::now() + Duration::from_secs(30);
            while in_flight() != 0 {
                assert!(
                    Instant::now() < deadline,
                    "the parked read was never released"
                );
                crate::time::sleep(Duration::from_millis(1)).await;
            }
            w.write_all(b"next").unwrap();
            let (n, buf) = Read::new(&r, Vec::with_capacity(8), u64::MAX)
                .submit()
                .await;
            assert_eq!((n.unwrap(), &buf[..]), (4, &b"next"[..]));
        });
    }

    #[test]
    fn a_close_dropped_before_it_ran_still_closes() {
        let rt = Builder::new().driver(DriverKind::Epoll).build().unwrap();
        rt.block_on(async {
            let (r, mut w) = std::io::pipe().unwrap();
            drop(crate::op::Close::new(r.into()).submit());
            // The read end is gone: writing is a broken pipe.
            let err = w.write_all(b"x").unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
            let (r, mut w) = std::io::pipe().unwrap();
            crate::op::Close::new(r.into()).submit().await.unwrap();
            let err = w.write_all(b"x").unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
        });
    }

    #[test]
    fn readiness_ops_wait_for_an_edge_and_dropped_ones_take_nothing() {
        let rt = Builder::new().driver(DriverKind::Epoll).build().unwrap();
        rt.block_on(async {
            let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
            let a = SharedFd::new(a.into());
            let mut recv = Box::pin(Recv::new(&a, Vec::with_capacity(8)).submit());
            assert!(poll_once(&mut recv).is_pending());
            assert_eq!(in_flight(), 1);
            drop(recv);
            assert_eq!(in_flight(), 0);
            (&b).write_all(b"abc").unwrap();
            let (n, buf) = Recv::new(&a, Vec::with_capacity(8)).submit().await;
            assert_eq!((n.unwrap(), &buf[..]), (3, &b"abc"[..]));
            // Waits for the next edge, which another task makes.
            let writer = crate::spawn(async move {
                crate::time::sleep(Duration::from_millis(2)).await;
                (&b).write_all(b"de").unwrap();
                b
            });
            let (n, buf) = Recv::new(&a, Vec::with_capacity(8)).submit().await;
            assert_eq!((n.unwrap(), &buf[..]), (2, &b"de"[..]));
            drop(writer.await.unwrap());
        });
    }

    /// Registers `fd` with the driver while nothing is queued (a receive
    /// that finds it empty, dropped), then lets the driver take the
    /// events of that registration: what arrives next is one new edge.
    async fn register_empty(fd: &SharedFd) {
        let mut recv = Box::pin(Recv::new(fd, Vec::with_capacity(8)).submit());
        assert!(poll_once(&mut recv).is_pending());
        drop(recv);
        crate::time::sleep(Duration::from_millis(1)).await;
    }

    #[test]
    fn reads_after_a_short_one_get_what_is_still_queued() {
        let rt = Builder::new().driver(DriverKind::Epoll).build().unwrap();
        rt.block_on(async {
            // Bounded; what the test guards against is a read that waits
            // for an edge that never comes.
            let bounded = |fut| crate::time::timeout(Duration::from_secs(30), fut);
            // A peek stops short but leaves the bytes queued: the receive
            // after it gets them without another edge.
            let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
            let a = SharedFd::new(a.into());
            register_empty(&a).await;
            (&b).write_all(b"abc").unwrap();
            let peek = Recv::new(&a, Vec::with_capacity(8)).flags(libc::MSG_PEEK);
            let (n, _) = bounded(peek.submit())
                .await
                .expect("the peek never finished");
            assert_eq!(n.unwrap(), 3);
            let (n, buf) = bounded(Recv::new(&a, Vec::with_capacity(8)).submit())
                .await
                .expect("the bytes peeked at were never received");
            assert_eq!((n.unwrap(), &buf[..]), (3, &b"abc"[..]));
            // Datagrams: a short receive of the first says nothing of the
            // second, received without another edge.
            let (u, v) = std::os::unix::net::UnixDatagram::pair().unwrap();
            let u = SharedFd::new(u.into());
            register_empty(&u).await;
            v.send(b"one").unwrap();
            v.send(b"two").unwrap();
            for want in [&b"one"[..], b"two"] {
                let (n, buf) = bounded(Recv::new(&u, Vec::with_capacity(8)).submit())
                    .await
                    .expect("a queued datagram was never received");
                assert_eq!((n.unwrap(), &buf[..]), (3, want));
            }
            // A stream's short receive: the next read waits for the bytes
            // that come after it, and gets them.
            (&b).write_all(b"de").unwrap();
            let (n, _) = Recv::new(&a, Vec::with_capacity(8)).submit().await;
            assert_eq!(n.unwrap(), 2);
            let writer = crate::spawn(async move {
                crate::time::sleep(Duration::from_millis(2)).await;
                (&b).write_all(b"fg").unwrap();
                b
            });
            let (n, buf) = bounded(Recv::new(&a, Vec::with_capacity(8)).submit())
                .await
                .expect("the bytes after a short read never woke the reader");
            assert_eq!((n.unwrap(), &buf[..]), (2, &b"fg"[..]));
            // Bytes and the end of the stream in one edge: the short
            // receive of the bytes must not make the end wait for another.
            let (c, d) = std::os::unix::net::UnixStream::pair().unwrap();
            let c = SharedFd::new(c.into());
            register_empty(&c).await;
            (&d).write_all(b"xy").unwrap();
            drop(d);
            let (n, _) = bounded(Recv::new(&c, Vec::with_capacity(8)).submit())
                .await
                .expect("the last bytes were never received");
            assert_eq!(n.unwrap(), 2);
            let (n, _) = bounded(Recv::new(&c, Vec::with_capacity(8)).submit())
                .await
                .expect("the end of the stream after the last bytes waited");
            assert_eq!(n.unwrap(), 0);
            // The end of a stream stays readable: every read after it
            // answers 0 at once.
            drop(writer.await.unwrap());
            for _ in 0..2 {
                let (n, _) = bounded(Recv::new(&a, Vec::with_capacity(8)).submit())
                    .await
                    .expect("a read at the end of the stream waited");
                assert_eq!(n.unwrap(), 0);
            }
        });
    }

    #[test]
    fn a_task_whose_operations_fail_at_once_still_lets_others_run() {
        let rt = Builder::new().driver(DriverKind::Epoll).build().unwrap();
        rt.block_on(async {
            // A listener shut down for reading: every accept fails with
            // EINVAL at once, without waiting (as when another worker
            // shuts a shared listener).
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            // SAFETY: plain system call on a descriptor `listener` owns.
            let rc = unsafe {
                libc::shutdown(std::os::fd::AsRawFd::as_raw_fd(&listener), libc::SHUT_RDWR)
            };
            assert_eq!(rc, 0);
            let fd = SharedFd::new(listener.into());
            let flag = std::rc::Rc::new(std::cell::Cell::new(false));
            let other = crate::spawn({
                let flag = flag.clone();
                async move { flag.set(true) }
            });
            // Without a budget this loop would run all its rounds before
            // the other task is ever polled.
            let mut rounds = 0u32;
            while !flag.get() {
                rounds += 1;
                assert!(rounds < 100_000, "the other task never ran");
                let res = crate::op::Accept::new(&fd).submit().await;
                assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::EINVAL));
            }
            other.await.unwrap();
        });
    }
}
