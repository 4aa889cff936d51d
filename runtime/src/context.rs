//! The per-runtime state (`Core`, runtime thread only), the part other
//! threads may touch (`Shared`), and the thread-local pointer to the runtime
//! running on this thread.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::{self, NonNull};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::{io, mem};

use slab::Slab;

use crate::blocking::Pool;
use crate::driver::Driver;
use crate::task::{Header, TaskRef};
use crate::time::Timers;

/// Everything a runtime owns, used only on its thread.
pub(crate) struct Core {
    pub(crate) driver: RefCell<Driver>,
    pub(crate) timers: RefCell<Timers>,
    /// Tasks ready to run, in wake order.
    pub(crate) queue: RefCell<VecDeque<TaskRef>>,
    /// Every task not yet complete, so that shutdown can drop their futures.
    pub(crate) tasks: RefCell<Slab<TaskRef>>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) blocking: Pool,
    /// Tasks spawned so far, for metrics.
    pub(crate) spawned: Cell<u64>,
    /// How many tasks run between two looks at the ring.
    pub(crate) budget: usize,
    /// Wakers of tasks that yielded, woken after the next turn of the ring.
    pub(crate) deferred: RefCell<Vec<std::task::Waker>>,
    /// Spare vector for wakers collected under a borrow and woken after.
    pub(crate) wake_spare: RefCell<Vec<std::task::Waker>>,
    /// Spare vector swapped with the remote queue to avoid reallocating.
    pub(crate) remote_spare: RefCell<Vec<TaskRef>>,
    /// Direct-descriptor slots whose last handle went while the driver was
    /// borrowed: closed at the next turn.
    pub(crate) direct_closes: RefCell<Vec<u32>>,
}

/// The part of a runtime that wakers on other threads reach.
pub(crate) struct Shared {
    /// Tasks woken from other threads.
    remote: Mutex<RemoteQueue>,
    /// Set when the eventfd was written and the runtime has not yet drained
    /// the remote queue: further wakes need no syscall.
    notified: AtomicBool,
    /// Written to wake the ring out of `io_uring_enter`.
    wake_fd: OwnedFd,
}

struct RemoteQueue {
    tasks: Vec<TaskRef>,
    /// The runtime is gone: wakes are dropped instead of queued.
    closed: bool,
}

impl Shared {
    pub(crate) fn new() -> io::Result<Shared> {
        // A blocking eventfd: io_uring polls it for us; a non-blocking one
        // would make the read op fail with EAGAIN instead of waiting.
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Shared {
            remote: Mutex::new(RemoteQueue {
                tasks: Vec::new(),
                closed: false,
            }),
            notified: AtomicBool::new(false),
            // SAFETY: fd is a fresh descriptor we own.
            wake_fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub(crate) fn wake_fd(&self) -> i32 {
        self.wake_fd.as_raw_fd()
    }

    /// Wakes the ring if it may be parked. Any thread.
    pub(crate) fn notify(&self) {
        if !self.notified.swap(true, Ordering::SeqCst) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to our eventfd. An
            // eventfd write only fails if the counter would overflow, which
            // cannot happen with one pending write at a time.
            unsafe {
                libc::write(
                    self.wake_fd.as_raw_fd(),
                    (&one as *const u64).cast(),
                    mem::size_of::<u64>(),
                )
            };
        }
    }

    /// Whether a wake from another thread is waiting to be looked at.
    pub(crate) fn is_notified(&self) -> bool {
        self.notified.load(Ordering::SeqCst)
    }

    fn push_remote(&self, task: TaskRef) {
        let mut remote = self.remote.lock().unwrap_or_else(|e| e.into_inner());
        if remote.closed {
            drop(remote);
            drop(task);
            return;
        }
        remote.tasks.push(task);
        drop(remote);
        self.notify();
    }

    /// Moves tasks woken from other threads into `out`. Runtime thread.
    pub(crate) fn drain_remote(&self, out: &mut Vec<TaskRef>) {
        if !self.notified.load(Ordering::SeqCst) {
            return;
        }
        // Clear the flag before draining: a wake that comes after the drain
        // sees it clear and writes the eventfd again.
        self.notified.store(false, Ordering::SeqCst);
        let mut remote = self.remote.lock().unwrap_or_else(|e| e.into_inner());
        mem::swap(&mut remote.tasks, out);
    }

    /// Stops queueing remote wakes and returns what was queued.
    pub(crate) fn close(&self) -> Vec<TaskRef> {
        let mut remote = self.remote.lock().unwrap_or_else(|e| e.into_inner());
        remote.closed = true;
        mem::take(&mut remote.tasks)
    }
}

thread_local! {
    /// The core of the runtime running on this thread, or null. Points into
    /// an `Rc<Core>` kept alive by the `Enter` guard that set it.
    static CURRENT: Cell<*const Core> = const { Cell::new(ptr::null()) };
}

/// Makes a core current on this thread until dropped.
pub(crate) struct Enter {
    previous: *const Core,
    _core: Rc<Core>,
}

impl Enter {
    /// Makes `core` current. With `nested_ok` false, panics if a runtime is
    /// already running on this thread.
    pub(crate) fn new(core: &Rc<Core>, nested_ok: bool) -> Enter {
        let previous = CURRENT.with(|c| c.get());
        if !nested_ok && !previous.is_null() {
            panic!(
                "cannot block_on inside a runtime: a runtime is already running on this \
                 thread; inside async code, .await the future or runtime::spawn it instead"
            );
        }
        CURRENT.with(|c| c.set(Rc::as_ptr(core)));
        Enter {
            previous,
            _core: core.clone(),
        }
    }
}

impl Drop for Enter {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.previous));
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
pub(crate) fn current_ptr() -> *const Core {
    CURRENT.with(|c| c.get())
}

/// Like [`current`], panicking with a message that says what to do.
pub(crate) fn expect_current(what: &str) -> Rc<Core> {
    current().unwrap_or_else(|| {
        panic!(
            "{what} must be called from inside a runtime: run your async code with \
             #[runtime::main], #[runtime::test] or Runtime::block_on"
        )
    })
}

/// Queues a woken task: locally when woken on its runtime's thread while
/// that runtime runs, through the shared queue (and the eventfd) otherwise.
pub(crate) fn schedule(task: TaskRef) {
    let shared: *const Shared = Arc::as_ptr(&task.header().shared);
    let local = CURRENT.with(|c| {
        let core = c.get();
        // SAFETY: see `current`; the core outlives this call.
        !core.is_null() && ptr::eq(Arc::as_ptr(unsafe { &(*core).shared }), shared)
    });
    if local {
        let core = CURRENT.with(|c| c.get());
        // SAFETY: checked non-null above; the core is alive (see `current`).
        unsafe { (*core).queue.borrow_mut().push_back(task) };
    } else {
        task.header().shared.clone().push_remote(task);
    }
}

impl Core {
    /// Removes a completed task from the set of live tasks, returning the
    /// set's reference.
    pub(crate) fn forget_task(&self, key: usize, ptr: NonNull<Header>) -> Option<TaskRef> {
        let mut tasks = self.tasks.borrow_mut();
        match tasks.get(key) {
            Some(t) if ptr::eq(t.header(), ptr.as_ptr()) => Some(tasks.remove(key)),
            _ => None,
        }
    }
}
