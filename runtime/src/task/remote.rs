//! The queue that other threads push woken (and remotely spawned) tasks
//! to, and the two ways of waking the ring out of `io_uring_enter` when
//! they do: writing its eventfd, or, from another runtime's thread, an
//! `IORING_OP_MSG_RING` that the waking runtime submits with its next turn
//! and that posts a CQE straight into this ring (the [`Outbox`]).
//!
//! Generic over what is queued so that it depends on nothing of the task
//! machinery above it (`task/raw.rs` queues `TaskRef`s in it).

use std::cell::{Cell, RefCell};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::{io, mem};

/// The part of a runtime that wakers on other threads reach.
pub(crate) struct Remote<T> {
    /// Tasks woken from other threads.
    remote: Mutex<RemoteQueue<T>>,
    /// Set when a wake-up (eventfd write or MSG_RING) was sent and the
    /// runtime has not yet drained the remote queue: further wakes need no
    /// wake-up.
    notified: AtomicBool,
    /// Written to wake the ring out of `io_uring_enter`.
    wake_fd: OwnedFd,
}

struct RemoteQueue<T> {
    tasks: Vec<T>,
    /// The runtime is gone: wakes are dropped instead of queued.
    closed: bool,
    /// A duplicate of the runtime's ring descriptor, for other runtimes to
    /// send `IORING_OP_MSG_RING` to. Each sender clones the `Arc` and keeps
    /// it until its submission has gone to the kernel, so the number it
    /// names is never closed (and reused) while an SQE points at it.
    /// Dropped (`None`) once the runtime closes: later wakes use the
    /// eventfd, which lives as long as this structure.
    ring: Option<Arc<OwnedFd>>,
}

impl<T> Remote<T> {
    pub(crate) fn new() -> io::Result<Remote<T>> {
        // A blocking eventfd: io_uring polls it for us; a non-blocking one
        // would make the read op fail with EAGAIN instead of waiting.
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Remote {
            remote: Mutex::new(RemoteQueue {
                tasks: Vec::new(),
                closed: false,
                ring: None,
            }),
            notified: AtomicBool::new(false),
            // SAFETY: fd is a fresh descriptor we own.
            wake_fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub(crate) fn wake_fd(&self) -> i32 {
        self.wake_fd.as_raw_fd()
    }

    /// Lets other runtimes wake this one with `IORING_OP_MSG_RING` sent to
    /// `ring` (a duplicate of this runtime's ring descriptor).
    pub(crate) fn set_ring(&self, ring: OwnedFd) {
        let mut remote = self.remote.lock().unwrap_or_else(|e| e.into_inner());
        if !remote.closed {
            remote.ring = Some(Arc::new(ring));
        }
    }

    /// Wakes the ring if it may be parked, with the eventfd. Any thread.
    pub(crate) fn notify(&self) {
        if !self.notified.swap(true, Ordering::SeqCst) {
            self.ring_eventfd();
        }
    }

    /// Writes the eventfd (whatever `notified` says).
    pub(crate) fn ring_eventfd(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd. An eventfd
        // write only fails if the counter would overflow, which cannot
        // happen: the runtime reads it back to zero each time it wakes.
        unsafe {
            libc::write(
                self.wake_fd.as_raw_fd(),
                (&one as *const u64).cast(),
                mem::size_of::<u64>(),
            )
        };
    }

    /// Sets the `notified` flag and says whether it was set already (then
    /// whoever set it wakes the runtime, and nothing more is needed).
    pub(crate) fn notified_swap(&self) -> bool {
        self.notified.swap(true, Ordering::SeqCst)
    }

    /// Whether a wake from another thread is waiting to be looked at.
    pub(crate) fn is_notified(&self) -> bool {
        self.notified.load(Ordering::SeqCst)
    }

    /// Queues `task` and wakes the runtime if it may be parked: with a
    /// MSG_RING sent by the calling thread's runtime (`outbox`) when both
    /// rings allow it, with the eventfd otherwise. A closed runtime takes
    /// nothing: the task is handed back.
    pub(crate) fn push(self: Arc<Self>, task: T, outbox: Option<&Outbox<T>>) -> Result<(), T> {
        let mut remote = self.remote.lock().unwrap_or_else(|e| e.into_inner());
        if remote.closed {
            return Err(task);
        }
        remote.tasks.push(task);
        // Under the lock, after the push: a drain that cleared the flag
        // before we looked takes our task, or we see the flag clear.
        if self.notified.load(Ordering::SeqCst) {
            return Ok(());
        }
        let ring = match outbox {
            Some(outbox) if outbox.enabled.get() => remote.ring.clone(),
            _ => None,
        };
        drop(remote);
        match (outbox, ring) {
            (Some(outbox), Some(ring)) => {
                // `notified` is set only when the MSG_RING is sent (see
                // `Outbox`): until then other threads' wakes still write
                // the eventfd, so a sender that is slow to reach its next
                // turn delays nobody else's wake-ups.
                let mut pending = outbox.pending.borrow_mut();
                if !pending.last().is_some_and(|(t, _)| Arc::ptr_eq(t, &self)) {
                    pending.push((self, ring));
                }
            }
            _ => {
                if !self.notified.swap(true, Ordering::SeqCst) {
                    if let Some(outbox) = outbox {
                        outbox.eventfd_wakes.set(outbox.eventfd_wakes.get() + 1);
                    }
                    self.ring_eventfd();
                }
            }
        }
        Ok(())
    }

    /// Moves tasks woken from other threads into `out`. Runtime thread.
    pub(crate) fn drain(&self, out: &mut Vec<T>) {
        if !self.notified.load(Ordering::SeqCst) {
            return;
        }
        // Clear the flag before draining: a wake that comes after the drain
        // sees it clear and wakes us again.
        self.notified.store(false, Ordering::SeqCst);
        let mut remote = self.remote.lock().unwrap_or_else(|e| e.into_inner());
        mem::swap(&mut remote.tasks, out);
    }

    /// Stops queueing remote wakes, lets go of the ring descriptor and
    /// returns what was queued.
    pub(crate) fn close(&self) -> Vec<T> {
        let mut remote = self.remote.lock().unwrap_or_else(|e| e.into_inner());
        remote.closed = true;
        remote.ring = None;
        mem::take(&mut remote.tasks)
    }
}

/// The wake-ups a runtime's thread owes other runtimes, sent as
/// `IORING_OP_MSG_RING` SQEs with its next submission (so a task that wakes
/// another worker costs no system call of its own). Runtime thread.
///
/// A queued wake-up does not set the target's `notified` flag: the turn
/// that sends it does (and sends nothing if the flag was set meanwhile), so
/// wakes from other threads are never held back by this one.
pub(crate) struct Outbox<T> {
    /// Whether wakes from this thread may use MSG_RING at all (the kernel
    /// has it, the ring is not SQPOLL, the runtime was not told to use the
    /// eventfd, and the runtime is not shutting down).
    pub(crate) enabled: Cell<bool>,
    /// Targets to send to: the remote (for the eventfd fallback) and its
    /// ring descriptor, kept open until the submission is done.
    pub(crate) pending: RefCell<Vec<Pending<T>>>,
    /// Eventfd wake-ups written from this thread, for metrics.
    pub(crate) eventfd_wakes: Cell<u64>,
}

/// One wake-up in an [`Outbox`].
pub(crate) type Pending<T> = (Arc<Remote<T>>, Arc<OwnedFd>);

impl<T> Outbox<T> {
    pub(crate) fn new(enabled: bool) -> Outbox<T> {
        Outbox {
            enabled: Cell::new(enabled),
            pending: RefCell::new(Vec::new()),
            eventfd_wakes: Cell::new(0),
        }
    }
}

/// A duplicate of `fd` (close-on-exec), owned.
pub(crate) fn dup(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC creates a new descriptor or fails; the
    // result is checked.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}
