//! Spawning tasks and running them.

use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use crate::blocking;
use crate::context::{expect_current, Core};
use crate::join::JoinHandle;
use crate::task::{TaskRef, JOIN_INTEREST, SCHEDULED};

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
    expect_current("runtime::spawn").spawn(future)
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
        match crate::context::current() {
            // Woken after the next turn of the ring, not at once: a task that
            // yields in a loop lets I/O and timers progress.
            Some(core) => core.deferred.borrow_mut().push(cx.waker().clone()),
            None => cx.waker().wake_by_ref(),
        }
        Poll::Pending
    }
}

impl Core {
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
        let key = self.tasks.borrow_mut().insert(owned);
        queued.header().owned_key.store(key, Ordering::Relaxed);
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
            task.run(self);
        }
        if !pulled_remote {
            self.pull_remote();
        }
    }

    /// Moves tasks woken on other threads into the run queue.
    fn pull_remote(&self) -> bool {
        let mut spare = self.remote_spare.borrow_mut();
        self.shared.drain_remote(&mut spare);
        if spare.is_empty() {
            return false;
        }
        self.queue.borrow_mut().extend(spare.drain(..));
        true
    }
}
