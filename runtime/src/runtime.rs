//! `Runtime`: creating one, the run loop of `block_on`, and shutdown.
//!
//! One tick of the loop:
//!
//! 1. poll the main future if it was woken;
//! 2. run up to `event_interval` ready tasks (tasks woken during the tick
//!    wait for the next one if the budget is spent);
//! 3. fire the timers whose deadline passed;
//! 4. one `io_uring_enter`: submit every queued SQE and reap every CQE.
//!    Only if nothing is ready to run does it wait, until a completion, a
//!    wake from another thread (the eventfd read) or the next timer.

use std::future::Future;
use std::io;
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use crate::builder::{Builder, Config};
use crate::scheduler::{current, Core, Enter};
use crate::task::raw::Shared;

/// A runtime: one io_uring, the tasks spawned on it and their timers, all
/// on the thread that created it.
///
/// ```
/// let rt = runtime::Runtime::new()?;
/// let answer = rt.block_on(async {
///     runtime::spawn(async { 6 * 7 }).await.unwrap()
/// });
/// assert_eq!(answer, 42);
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// Dropping the runtime drops every task's future, cancels every operation
/// still in the kernel and waits for the kernel to let go of their memory.
pub struct Runtime {
    core: Rc<Core>,
    shutdown_timeout: Duration,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("setup_flags", &self.core.driver.borrow().setup_flags())
            .finish()
    }
}

impl Runtime {
    /// A runtime with the default settings (see [`Builder`]).
    ///
    /// # Errors
    ///
    /// As for [`Builder::build`]. Where io_uring is disabled, blocked by
    /// seccomp or missing, the runtime runs on the epoll driver instead
    /// (see [`DriverKind`](crate::DriverKind)).
    pub fn new() -> io::Result<Runtime> {
        Builder::new().build()
    }

    /// A builder to choose the settings.
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// The queue other threads reach this runtime through.
    pub(crate) fn shared(&self) -> Arc<Shared> {
        self.core.shared.clone()
    }

    pub(crate) fn from_config(config: Config) -> io::Result<Runtime> {
        Ok(Runtime {
            core: Rc::new(Core::new(&config)?),
            shutdown_timeout: config.shutdown_timeout,
        })
    }

    /// Runs `future` to completion on this thread, together with every task
    /// spawned on this runtime, and returns its output.
    ///
    /// A panic in `future` propagates out of `block_on`; a panic in a spawned
    /// task does not (it goes to that task's [`JoinHandle`](crate::JoinHandle)).
    /// Tasks still running when `future` completes stay on the runtime and
    /// run again in the next `block_on`, or are dropped with the runtime.
    ///
    /// # Panics
    ///
    /// If called from inside a runtime (async code must `.await` instead).
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        let _enter = Enter::new(&self.core, false);
        let core = &*self.core;
        let main_wake = Arc::new(MainWake {
            woken: AtomicBool::new(true),
            shared: core.shared.clone(),
        });
        let waker = Waker::from(main_wake.clone());
        let mut cx = Context::from_waker(&waker);
        let mut future = pin!(future);
        loop {
            if main_wake.woken.swap(false, Ordering::AcqRel) {
                if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                    return out;
                }
            }
            core.run_tasks();
            core.fire_timers();
            let idle = core.queue.borrow().is_empty()
                && core.deferred.borrow().is_empty()
                && !main_wake.woken.load(Ordering::Acquire)
                && !core.shared.is_notified();
            core.turn(idle);
            core.wake_deferred();
        }
    }
}

impl Runtime {
    /// Counters of this runtime (see [`Metrics`](crate::Metrics)).
    pub fn metrics(&self) -> crate::Metrics {
        crate::metrics::of(&self.core)
    }

    /// The io_uring facilities this runtime's ring has (see
    /// [`Features`](crate::Features)); the same as [`crate::features()`]
    /// called inside it, but callable from outside `block_on`.
    ///
    /// ```
    /// let rt = runtime::Runtime::new().unwrap();
    /// let features = rt.features();
    /// // Every kernel this runtime supports (5.11+) has IORING_OP_NOP.
    /// assert!(features.supports(runtime::op::io_uring::opcode::Nop::CODE));
    /// ```
    pub fn features(&self) -> crate::Features {
        self.core.driver.borrow_mut().features()
    }
}

/// Runs `future` to completion on a fresh runtime with the default
/// settings, then drops the runtime.
///
/// # Panics
///
/// If the runtime cannot be created (the message says why and what to do),
/// or if called from inside a runtime.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let rt = Runtime::new().unwrap_or_else(|e| panic!("cannot start the runtime: {e}"));
    rt.block_on(future)
}

/// The waker of `block_on`'s own future.
struct MainWake {
    woken: AtomicBool,
    shared: Arc<Shared>,
}

impl Wake for MainWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.woken.swap(true, Ordering::AcqRel) {
            // From the runtime's own thread the loop sees the flag; from
            // another thread the ring may be parked and must be woken. The
            // eventfd write is cheap and harmless if it was not parked.
            if !current().is_some_and(|core| Arc::ptr_eq(&core.shared, &self.shared)) {
                self.shared.notify();
            }
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Futures dropped here may touch the runtime (dropping an op, a
        // sleep), so make it current while they go.
        let _enter = Enter::new(&self.core, true);
        self.core.shutdown(self.shutdown_timeout);
    }
}
