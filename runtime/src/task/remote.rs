//! The queue that other threads push woken tasks to, and the eventfd that
//! wakes the ring out of `io_uring_enter` when they do.
//!
//! Generic over what is queued so that it depends on nothing of the task
//! machinery above it (`task/raw.rs` queues `TaskRef`s in it).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::{io, mem};

/// The part of a runtime that wakers on other threads reach.
pub(crate) struct Remote<T> {
    /// Tasks woken from other threads.
    remote: Mutex<RemoteQueue<T>>,
    /// Set when the eventfd was written and the runtime has not yet drained
    /// the remote queue: further wakes need no syscall.
    notified: AtomicBool,
    /// Written to wake the ring out of `io_uring_enter`.
    wake_fd: OwnedFd,
}

struct RemoteQueue<T> {
    tasks: Vec<T>,
    /// The runtime is gone: wakes are dropped instead of queued.
    closed: bool,
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

    pub(crate) fn push(&self, task: T) {
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
    pub(crate) fn drain(&self, out: &mut Vec<T>) {
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
    pub(crate) fn close(&self) -> Vec<T> {
        let mut remote = self.remote.lock().unwrap_or_else(|e| e.into_inner());
        remote.closed = true;
        mem::take(&mut remote.tasks)
    }
}
