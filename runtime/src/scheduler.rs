//! The executor: `Core` (everything a runtime owns, used only on its
//! thread) with all that it does: spawning, running a budget of ready
//! tasks, one turn of the ring, timers, shutdown; the thread-local pointer
//! to the runtime running on this thread; and the public `spawn`,
//! `spawn_blocking` and `yield_now`.
//!
//! The loop that calls these, tick by tick, is `Runtime::block_on`
//! (`runtime.rs`).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::ptr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::blocking::{self, Pool};
use crate::builder::Config;
use crate::builder::CrossWake;
use crate::driver::kind::AnyDriver as Driver;
use crate::task::raw::{
    self, LocalGuard, Outbox, OwnedTasks, RunQueue, Shared, TaskRef, COMPLETE, JOIN_INTEREST,
    SCHEDULED,
};
use crate::task::remote::{self, Pending};
use crate::task::JoinHandle;
use crate::time::timers::Timers;

/// Everything a runtime owns, used only on its thread.
pub(crate) struct Core {
    pub(crate) driver: RefCell<Driver>,
    pub(crate) timers: RefCell<Timers>,
    /// `Builder::timer_slack`: idle waits for a timer end on a multiple of
    /// it, counted from `timer_epoch`.
    timer_slack: Duration,
    timer_epoch: Instant,
    /// Tasks ready to run, in wake order.
    pub(crate) queue: RunQueue,
    /// Every task not yet complete, so that shutdown can drop their futures.
    pub(crate) tasks: OwnedTasks,
    pub(crate) shared: Arc<Shared>,
    pub(crate) blocking: Pool,
    /// Tasks spawned so far, for metrics.
    pub(crate) spawned: Cell<u64>,
    /// How many tasks run between two looks at the ring.
    pub(crate) budget: usize,
    /// Wakers of tasks that yielded, woken after the next turn of the ring.
    pub(crate) deferred: RefCell<Vec<std::task::Waker>>,
    /// Whether operations may first be tried at once
    /// ([`Operation::perform_nowait`](crate::op::Operation::perform_nowait);
    /// `Builder::nowait_reads`).
    nowait_reads: bool,
    /// How many more operations may complete at once on the io_uring
    /// driver before the next turn of the ring (see [`NOWAIT_BUDGET`]).
    nowait_budget: Cell<u32>,
    /// Operations that completed at once, for metrics.
    pub(crate) nowait_count: Cell<u64>,
    /// Spare vector for wakers collected under a borrow and woken after.
    pub(crate) wake_spare: RefCell<Vec<std::task::Waker>>,
    /// Spare vector swapped with the remote queue to avoid reallocating.
    pub(crate) remote_spare: RefCell<Vec<TaskRef>>,
    /// Direct-descriptor slots whose last handle went while the driver was
    /// borrowed: closed at the next turn.
    pub(crate) direct_closes: RefCell<Vec<u32>>,
    /// Wake-ups this runtime owes other runtimes, sent as MSG_RING with
    /// the next turn (while `block_on` runs).
    pub(crate) outbox: Outbox,
    /// Spare vector swapped with the outbox to avoid reallocating.
    outbox_spare: RefCell<Vec<Pending<TaskRef>>>,
    /// Scratch space for MSG_RING sends that failed: (batch, index).
    msg_failures: RefCell<Vec<(u64, usize)>>,
    /// The last batches of MSG_RING sends, by batch number: their ring
    /// descriptors stay open while the kernel may still hold the SQEs, and
    /// a failure the kernel reports a turn late still finds its target.
    msg_sent: RefCell<VecDeque<(u64, Vec<Pending<TaskRef>>)>>,
}

/// How many operations may complete at once
/// ([`Operation::perform_nowait`](crate::op::Operation::perform_nowait): a
/// file read the page cache serves) between two turns of the ring. Such an
/// operation never makes its task wait, so a task reading a cached file in
/// a loop would never yield; past the budget its reads go through the ring
/// (and it waits for their completions like any task) until the next turn.
/// The same number as the epoll driver's budget for operations completing
/// on the spot and the default `event_interval`: one trip through the ring
/// per 128 reads costs little, and other tasks wait at most that many
/// reads (about a hundred microseconds) for their turn.
const NOWAIT_BUDGET: u32 = 128;

/// How many batches of MSG_RING sends are remembered (more while the
/// submission queue still holds SQEs).
const MSG_BATCHES_KEPT: usize = 2;

thread_local! {
    /// The core of the runtime running on this thread, or null. Points into
    /// an `Rc<Core>` kept alive by the `Enter` guard that set it.
    static CURRENT: Cell<*const Core> = const { Cell::new(ptr::null()) };
}

/// Makes a core current on this thread until dropped.
pub(crate) struct Enter {
    previous: *const Core,
    _queues: LocalGuard,
    core: Rc<Core>,
}

impl Enter {
    /// Makes `core` current. With `nested_ok` false (`block_on`), panics if
    /// a runtime is already running on this thread, and wakes of other
    /// runtimes' tasks go to the core's outbox (sent as MSG_RING with the
    /// next turn); with `nested_ok` true (shutdown) they use the eventfd.
    pub(crate) fn new(core: &Rc<Core>, nested_ok: bool) -> Enter {
        let previous = CURRENT.with(|c| c.get());
        if !nested_ok && !previous.is_null() {
            panic!(
                "cannot block_on inside a runtime: a runtime is already running on this \
                 thread; inside async code, .await the future or runtime::spawn it instead"
            );
        }
        CURRENT.with(|c| c.set(Rc::as_ptr(core)));
        let outbox = (!nested_ok).then_some(&core.outbox);
        // SAFETY: the queues live in the core, which the guard keeps alive
        // (the `Rc` below) and which never moves (it is in an `Rc`).
        let queues = unsafe { raw::enter(&core.queue, &core.shared, outbox) };
        Enter {
            previous,
            _queues: queues,
            core: core.clone(),
        }
    }
}

impl Drop for Enter {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.previous));
        // Wakes queued after the last turn (by `block_on`'s own future as
        // it finished, or by a panic unwinding) must not wait for a turn
        // that may never come.
        self.core.flush_outbox_to_eventfd();
    }
}

/// The runtime running on this thread, if any.
pub(crate) fn current() -> Option<Rc<Core>> {
    let ptr = CURRENT.with(|c| c.get());
    if ptr.is_null() {
        return None;
    }
    // SAFETY: a non-null CURRENT was set by an `Enter` guard that keeps the
    // `Rc<Core>` alive and clears the pointer when dropped; the pointer came
    // from `Rc::as_ptr`, so taking one more strong count is valid.
    unsafe {
        Rc::increment_strong_count(ptr);
        Some(Rc::from_raw(ptr))
    }
}

/// The address of the runtime running on this thread (null if none), to
/// compare with without touching its reference count.
#[inline]
pub(crate) fn current_ptr() -> *const Core {
    CURRENT.with(|c| c.get())
}

/// Like [`current`], panicking with a message that says what to do.
pub(crate) fn expect_current(what: &str) -> Rc<Core> {
    current().unwrap_or_else(|| no_runtime(what))
}

/// Runs `f` with the runtime running on this thread, without taking a
/// reference count; panics like [`expect_current`] if there is none.
fn with_current<R>(what: &str, f: impl FnOnce(&Core) -> R) -> R {
    let ptr = current_ptr();
    if ptr.is_null() {
        no_runtime(what);
    }
    // SAFETY: a non-null CURRENT points into an `Rc<Core>` that the `Enter`
    // guard which set it keeps alive until it clears the pointer; that
    // guard outlives this call (it is dropped by the `block_on` or runtime
    // drop further up this thread's stack).
    f(unsafe { &*ptr })
}

#[cold]
fn no_runtime(what: &str) -> ! {
    panic!(
        "{what} must be called from inside a runtime: run your async code with \
         #[runtime::main], #[runtime::test] or Runtime::block_on"
    )
}

/// Spawns a task on the current runtime and returns a handle to await its
/// output.
///
/// The task starts at the runtime's next tick; it need not be `Send`, since
/// it never leaves this thread. Dropping the handle detaches the task.
///
/// # Panics
///
/// If no runtime is running on this thread (call it from inside
/// `#[runtime::main]`, `#[runtime::test]` or `Runtime::block_on`).
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    with_current("runtime::spawn", |core| core.spawn(future))
}

/// Runs a blocking closure on the runtime's blocking thread pool and returns
/// a handle to await its result, without blocking the ring.
///
/// The pool is small and bounded (see
/// [`Builder::max_blocking_threads`](crate::Builder::max_blocking_threads));
/// when every thread is busy, jobs wait in a queue. A panic in `f` becomes a
/// [`JoinError`](crate::JoinError). Aborting the handle does not stop a
/// closure that already started.
///
/// # Panics
///
/// If no runtime is running on this thread.
pub fn spawn_blocking<F, R>(f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let core = expect_current("runtime::spawn_blocking");
    let (tx, rx) = blocking::channel();
    core.blocking.execute(Box::new(move || {
        tx.send(catch_unwind(AssertUnwindSafe(f)));
    }));
    core.spawn(async move {
        match rx.await {
            Ok(Ok(value)) => value,
            Ok(Err(payload)) => resume_unwind(payload),
            Err(blocking::NotRun) => resume_unwind(Box::new(
                "spawn_blocking: the closure never ran (no blocking thread could be started, \
                 or the runtime shut down)",
            )),
        }
    })
}

/// Yields to the runtime: every other ready task runs, and the ring is
/// looked at once (I/O submitted and reaped, timers fired) before this task
/// continues.
pub async fn yield_now() {
    YieldNow { yielded: false }.await
}

struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        match current() {
            // Woken after the next turn of the ring, not at once: a task that
            // yields in a loop lets I/O and timers progress.
            Some(core) => core.deferred.borrow_mut().push(cx.waker().clone()),
            None => cx.waker().wake_by_ref(),
        }
        Poll::Pending
    }
}

impl Core {
    /// The core of a new runtime with `config`'s settings.
    pub(crate) fn new(config: &Config) -> io::Result<Core> {
        let shared = Arc::new(Shared::new()?);
        let driver = Driver::new(&config.ring, shared.wake_fd())?;
        let msg_ring = config.cross_wake == CrossWake::MsgRing && driver.msg_ring_usable();
        if config.cross_wake == CrossWake::MsgRing && driver.msg_ring_receivable() {
            // Other runtimes may wake this one with MSG_RING sent to a
            // duplicate of its ring descriptor (see `Remote::set_ring`).
            shared.set_ring(remote::dup(driver.ring_fd())?);
        }
        Ok(Core {
            driver: RefCell::new(driver),
            timers: RefCell::new(Timers::new()),
            timer_slack: config.timer_slack,
            timer_epoch: Instant::now(),
            queue: RefCell::new(VecDeque::new()),
            tasks: OwnedTasks::new(),
            shared,
            blocking: Pool::new(config.max_blocking_threads, config.blocking_keep_alive),
            spawned: Cell::new(0),
            budget: config.event_interval,
            deferred: RefCell::new(Vec::new()),
            nowait_reads: config.nowait_reads,
            nowait_budget: Cell::new(if config.nowait_reads {
                NOWAIT_BUDGET
            } else {
                0
            }),
            nowait_count: Cell::new(0),
            wake_spare: RefCell::new(Vec::new()),
            remote_spare: RefCell::new(Vec::new()),
            direct_closes: RefCell::new(Vec::new()),
            outbox: Outbox::new(msg_ring),
            outbox_spare: RefCell::new(Vec::new()),
            msg_failures: RefCell::new(Vec::new()),
            msg_sent: RefCell::new(VecDeque::new()),
        })
    }

    /// Whether an operation may be tried at once on the io_uring driver
    /// now: allowed, and within this turn's budget.
    pub(crate) fn nowait_allowed(&self) -> bool {
        self.nowait_budget.get() > 0
    }

    /// Whether operations may be tried at once at all (the epoll driver
    /// has a budget of its own for operations completing on the spot).
    pub(crate) fn nowait_enabled(&self) -> bool {
        self.nowait_reads
    }

    /// An operation completed at once: counted, and one less in the
    /// budget.
    pub(crate) fn nowait_done(&self) {
        self.nowait_count.set(self.nowait_count.get() + 1);
        self.nowait_budget
            .set(self.nowait_budget.get().saturating_sub(1));
    }

    /// Sends the outbox's wake-ups with the eventfd instead (at the end of
    /// `block_on`, and at shutdown).
    pub(crate) fn flush_outbox_to_eventfd(&self) {
        // (A borrow held by code that is unwinding leaves it for later.)
        let Ok(mut pending) = self.outbox.pending.try_borrow_mut() else {
            return;
        };
        let pending = std::mem::take(&mut *pending);
        let mut n = 0;
        for (target, _ring) in &pending {
            // Queued wakes have not set the flag (see `Outbox`).
            if !target.notified_swap() {
                target.ring_eventfd();
                n += 1;
            }
        }
        self.outbox
            .eventfd_wakes
            .set(self.outbox.eventfd_wakes.get() + n);
    }

    pub(crate) fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        self.spawned.set(self.spawned.get() + 1);
        // Three references: the set of live tasks, the run queue, the handle.
        let raw = TaskRef::allocate(future, self.shared.clone(), 3, SCHEDULED | JOIN_INTEREST);
        // SAFETY: each call takes over one of the three references.
        let (owned, queued) = unsafe { (TaskRef::from_raw(raw), TaskRef::from_raw(raw)) };
        self.tasks.insert(owned);
        self.queue.borrow_mut().push_back(queued);
        JoinHandle::new(raw)
    }

    /// Runs up to one budget of ready tasks.
    pub(crate) fn run_tasks(&self) {
        let mut pulled_remote = false;
        for _ in 0..self.budget {
            let next = self.queue.borrow_mut().pop_front();
            let task = match next {
                Some(task) => task,
                None if !pulled_remote => {
                    pulled_remote = true;
                    if !self.pull_remote() {
                        break;
                    }
                    continue;
                }
                None => break,
            };
            task.run(&self.tasks);
        }
        if !pulled_remote {
            self.pull_remote();
        }
    }

    /// Moves tasks woken on other threads into the run queue, adopting
    /// those spawned from other threads into the set of live tasks.
    fn pull_remote(&self) -> bool {
        let mut spare = self.remote_spare.borrow_mut();
        self.shared.drain(&mut spare);
        if spare.is_empty() {
            return false;
        }
        for task in spare.iter() {
            self.tasks.adopt(task);
        }
        self.queue.borrow_mut().extend(spare.drain(..));
        true
    }

    /// One `io_uring_enter` (waiting if `idle`), then wakes the tasks whose
    /// operations completed and drops the resources of finished ignored
    /// ops, both outside the driver's borrow.
    pub(crate) fn turn(&self, idle: bool) {
        if self.nowait_reads {
            self.nowait_budget.set(NOWAIT_BUDGET);
        }
        let mut idle = idle;
        let mut timeout = None;
        if idle {
            if let Some(deadline) = self.timers.borrow_mut().next_deadline() {
                let now = Instant::now();
                if deadline <= now {
                    // A timer is due: don't wait at all.
                    idle = false;
                } else {
                    timeout = Some(self.timer_wake_at(deadline) - now);
                }
            }
        }
        let mut wakers = std::mem::take(&mut *self.wake_spare.borrow_mut());
        // Wake-ups owed to other runtimes go out with this submission; their
        // ring descriptors stay open (the `Arc`s) until it is done.
        let mut msgs = std::mem::take(&mut *self.outbox_spare.borrow_mut());
        std::mem::swap(&mut msgs, &mut *self.outbox.pending.borrow_mut());
        // Only targets nobody has notified since the wake was queued need
        // one; sending sets the flag (see `Outbox`).
        msgs.retain(|(target, _)| !target.notified_swap());
        let mut failures = self.msg_failures.borrow_mut();
        let mut sent = self.msg_sent.borrow_mut();
        let (released, sq_empty) = {
            let mut driver = self.driver.borrow_mut();
            for slot in self.direct_closes.borrow_mut().drain(..) {
                driver.close_direct(slot);
            }
            if !msgs.is_empty() {
                let batch = driver.push_msg_rings(msgs.iter().map(|(_, ring)| ring.as_raw_fd()));
                sent.push_back((batch, std::mem::take(&mut msgs)));
            }
            driver.turn(idle, timeout);
            driver.take_msg_failures(&mut failures);
            driver.swap_wakers(&mut wakers);
            (driver.take_released(), driver.sq_is_empty())
        };
        // A MSG_RING the kernel refused: wake that runtime with its eventfd.
        for (batch, index) in failures.drain(..) {
            let target = sent
                .iter()
                .find(|(b, _)| *b == batch)
                .and_then(|(_, batch)| batch.get(index));
            match target {
                Some((target, _)) => target.ring_eventfd(),
                // A batch too old to be remembered: wake every target still
                // known and stop using MSG_RING on this runtime.
                None => {
                    self.outbox.enabled.set(false);
                    for (_, batch) in sent.iter() {
                        for (target, _) in batch {
                            target.ring_eventfd();
                        }
                    }
                }
            }
        }
        drop(failures);
        // Forget the oldest batches once the kernel has every SQE (it then
        // holds its own reference to each target ring's file).
        while sq_empty && sent.len() > MSG_BATCHES_KEPT {
            if let Some((_, mut old)) = sent.pop_front() {
                old.clear();
                msgs = old;
            }
        }
        drop(sent);
        *self.outbox_spare.borrow_mut() = msgs;
        for waker in wakers.drain(..) {
            waker.wake();
        }
        *self.wake_spare.borrow_mut() = wakers;
        drop(released);
    }

    /// When an idle wait for a timer due at `deadline` ends: the deadline
    /// itself, or with a timer slack the next multiple of the slack (from
    /// the runtime's creation) at or after it, so that timers close
    /// together share one wake-up.
    fn timer_wake_at(&self, deadline: Instant) -> Instant {
        let slack = self.timer_slack.as_nanos();
        if slack == 0 {
            return deadline;
        }
        let since = deadline.saturating_duration_since(self.timer_epoch);
        let rounded = since.as_nanos().div_ceil(slack) * slack;
        u64::try_from(rounded)
            .ok()
            .and_then(|n| self.timer_epoch.checked_add(Duration::from_nanos(n)))
            .unwrap_or(deadline)
    }

    /// Wakes the tasks that yielded before this turn.
    pub(crate) fn wake_deferred(&self) {
        // Most turns have nothing deferred: skip the swap and the drain.
        if self.deferred.borrow().is_empty() {
            return;
        }
        let mut deferred = std::mem::take(&mut *self.deferred.borrow_mut());
        for waker in deferred.drain(..) {
            waker.wake();
        }
        // Keep the allocation for the next turn.
        let mut slot = self.deferred.borrow_mut();
        if slot.is_empty() {
            *slot = deferred;
        }
    }

    pub(crate) fn fire_timers(&self) {
        let now = Instant::now();
        if self
            .timers
            .borrow_mut()
            .next_deadline()
            .is_none_or(|d| d > now)
        {
            return;
        }
        let mut wakers = std::mem::take(&mut *self.wake_spare.borrow_mut());
        self.timers.borrow_mut().fire(now, &mut wakers);
        for waker in wakers.drain(..) {
            waker.wake();
        }
        *self.wake_spare.borrow_mut() = wakers;
    }

    /// Drops every task and waits for the kernel to finish every operation.
    pub(crate) fn shutdown(&self, grace: Duration) {
        // Futures are dropped first: their in-flight ops get cancelled and
        // park their resources in the driver. Dropping a future can spawn or
        // wake tasks, so repeat until nothing is left.
        self.outbox.enabled.set(false);
        self.flush_outbox_to_eventfd();
        loop {
            let tasks = self.tasks.drain();
            let queued: Vec<_> = self.queue.borrow_mut().drain(..).collect();
            let remote = self.shared.close();
            if tasks.is_empty() && queued.is_empty() && remote.is_empty() {
                break;
            }
            // Every task not complete: the live ones, and those spawned
            // from other threads that never ran (only in the remote queue).
            // A complete task may still be queued; its output is its
            // JoinHandle's, maybe on another thread: leave it alone.
            for task in tasks.iter().chain(&queued).chain(&remote) {
                if task.header().state.load(Ordering::Acquire) & COMPLETE == 0 {
                    task.drop_stage();
                    task.finish_cancelled();
                }
            }
            drop(tasks);
            drop(queued);
            drop(remote);
        }
        let timers = self.timers.borrow_mut().clear();
        drop(timers);
        let deferred = std::mem::take(&mut *self.deferred.borrow_mut());
        drop(deferred);
        self.blocking.shutdown();
        let released = {
            let mut driver = self.driver.borrow_mut();
            for slot in self.direct_closes.borrow_mut().drain(..) {
                driver.close_direct(slot);
            }
            driver.shutdown(grace);
            driver.clear_wakers();
            driver.take_released()
        };
        drop(released);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Runtime;

    /// Whether `fd` has something to read, without blocking.
    fn readable(fd: i32) -> bool {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd, no wait.
        unsafe { libc::poll(&mut pfd, 1, 0) == 1 }
    }

    #[test]
    fn a_timer_slack_rounds_idle_waits_up_to_its_multiples() {
        let ms = Duration::from_millis(1);
        let rt = Runtime::builder().timer_slack(ms).build().unwrap();
        rt.block_on(async {
            let core = current().unwrap();
            let e = core.timer_epoch;
            let us = Duration::from_micros(1);
            assert_eq!(core.timer_wake_at(e + us), e + ms);
            assert_eq!(core.timer_wake_at(e + ms), e + ms);
            assert_eq!(core.timer_wake_at(e + ms + us), e + 2 * ms);
            // Never before the deadline, at most one slack after it.
            for n in [1u64, 999, 1_000_001, 123_456_789] {
                let d = e + Duration::from_nanos(n);
                let w = core.timer_wake_at(d);
                assert!(w >= d && w - d < ms, "{n}");
            }
        });
        let rt = Runtime::new().unwrap();
        rt.block_on(async {
            let core = current().unwrap();
            let d = Instant::now() + Duration::from_nanos(12_345);
            assert_eq!(core.timer_wake_at(d), d, "no slack: the deadline itself");
        });
    }

    #[test]
    fn a_refused_msg_ring_falls_back_to_the_eventfd() {
        let rt = Runtime::new().unwrap();
        if !rt.features().msg_ring {
            return;
        }
        // A target whose "ring" is its own eventfd: the kernel refuses the
        // MSG_RING (EBADFD), and the sender writes the eventfd instead.
        let target: Arc<Shared> = Arc::new(Shared::new().unwrap());
        target.set_ring(remote::dup(target.wake_fd()).unwrap());
        let raw = TaskRef::allocate(async {}, target.clone(), 1, SCHEDULED);
        // SAFETY: takes over the one reference.
        let task = unsafe { TaskRef::from_raw(raw) };
        rt.block_on(async {
            let core = current().unwrap();
            assert!(target.clone().push(task, Some(&core.outbox)).is_ok());
            assert_eq!(core.outbox.pending.borrow().len(), 1);
            assert!(!readable(target.wake_fd()));
            // One turn of the ring sends it.
            crate::yield_now().await;
            assert!(core.outbox.pending.borrow().is_empty());
            assert_eq!(crate::metrics().msg_ring_wakes_sent, 1);
        });
        assert!(readable(target.wake_fd()));
        for task in target.close() {
            task.drop_stage();
        }
    }

    #[test]
    fn wakes_owed_when_block_on_returns_go_by_eventfd() {
        let rt = Runtime::new().unwrap();
        if !rt.features().msg_ring {
            return;
        }
        let other = Runtime::new().unwrap();
        let target = other.shared();
        let raw = TaskRef::allocate(async {}, target.clone(), 1, SCHEDULED);
        // SAFETY: takes over the one reference.
        let task = unsafe { TaskRef::from_raw(raw) };
        // Queued by block_on's own future just before it returns: no turn
        // follows, so leaving block_on writes the eventfd.
        rt.block_on(async {
            let core = current().unwrap();
            assert!(target.clone().push(task, Some(&core.outbox)).is_ok());
            assert_eq!(core.outbox.pending.borrow().len(), 1);
        });
        assert!(readable(target.wake_fd()));
        assert_eq!(rt.metrics().eventfd_wakes_sent, 1);
        assert_eq!(rt.metrics().msg_ring_wakes_sent, 0);
    }
}
