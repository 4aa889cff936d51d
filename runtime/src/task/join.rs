//! Awaiting a task's output: `JoinHandle`.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use crate::task::error::JoinError;
use crate::task::raw::{self as task, Header, CANCELLED, COMPLETE, JOIN_INTEREST};

/// An owned permission to await a spawned task's output.
///
/// Awaiting it gives `Ok(output)`, or a [`JoinError`] if the task panicked
/// or was aborted. Dropping it detaches the task, which keeps running; its
/// output is then dropped when it finishes.
///
/// A `JoinHandle` is bound to the thread of the runtime that spawned the
/// task (it is neither `Send` nor `Sync`).
pub struct JoinHandle<T> {
    raw: NonNull<Header>,
    _marker: PhantomData<(T, *const ())>,
}

impl<T> JoinHandle<T> {
    /// Takes over one reference to the task.
    pub(crate) fn new(raw: NonNull<Header>) -> Self {
        JoinHandle {
            raw,
            _marker: PhantomData,
        }
    }

    fn header(&self) -> &Header {
        // SAFETY: the handle owns a reference, so the task is live.
        unsafe { self.raw.as_ref() }
    }

    /// Cancels the task: it is not polled again and its future is dropped
    /// (on the runtime's thread, at its next turn). Awaiting the handle then
    /// gives a [`JoinError`] for which [`is_cancelled`](JoinError::is_cancelled)
    /// is true, unless the task had already finished. For a task of
    /// [`spawn_blocking`](crate::spawn_blocking), the closure itself keeps
    /// running: threads cannot be interrupted.
    pub fn abort(&self) {
        let prev = self.header().state.fetch_or(CANCELLED, Ordering::AcqRel);
        if prev & COMPLETE == 0 {
            // SAFETY: we hold a reference.
            unsafe { task::schedule(self.raw) };
        }
    }

    /// Whether the task has finished (returned, panicked or been cancelled).
    pub fn is_finished(&self) -> bool {
        self.header().state.load(Ordering::Acquire) & COMPLETE != 0
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.is_finished() {
            let mut out: Poll<Result<T, JoinError>> = Poll::Pending;
            // SAFETY: this handle is !Send, so we are on the runtime's thread;
            // `out` has the type the task's vtable writes.
            unsafe { task::read_output(self.raw, (&mut out as *mut Poll<_>).cast()) };
            return out;
        }
        // SAFETY: runtime thread (the handle is !Send); task live.
        unsafe { task::set_join_waker(self.raw, cx.waker()) };
        // The task may have completed between the check and storing the
        // waker only if it ran, which cannot happen during this poll on this
        // single thread.
        Poll::Pending
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        let prev = self
            .header()
            .state
            .fetch_and(!JOIN_INTEREST, Ordering::AcqRel);
        if prev & COMPLETE != 0 {
            // SAFETY: runtime thread (the handle is !Send); drops the unread
            // output, if any.
            unsafe { task::drop_stage(self.raw) };
        }
        // SAFETY: the handle owns one reference.
        unsafe { task::drop_ref(self.raw) };
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}
