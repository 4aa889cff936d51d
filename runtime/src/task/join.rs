//! Awaiting a task's output: `JoinHandle`.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use crate::task::error::JoinError;
use crate::task::raw::{self as task, Header, CANCELLED, COMPLETE};

/// An owned permission to await a spawned task's output.
///
/// Awaiting it gives `Ok(output)`, or a [`JoinError`] if the task panicked
/// or was aborted. Dropping it detaches the task, which keeps running; its
/// output is then dropped when it finishes.
///
/// When the output `T` is `Send`, so is the handle (and `Sync`): it can be
/// awaited on any thread or runtime, e.g. a task of one
/// [`Pool`](crate::Pool) worker awaiting a task of another, or a plain
/// thread blocking on it with any executor. The task itself stays on the
/// runtime that runs it. With a `T` that is not `Send`, the handle is bound
/// to the thread of the runtime that spawned the task:
///
/// ```compile_fail
/// fn send<T: Send>(_: T) {}
/// runtime::block_on(async {
///     let handle = runtime::spawn(async { std::rc::Rc::new(1) });
///     send(handle); // JoinHandle<Rc<i32>> is not Send
/// });
/// ```
pub struct JoinHandle<T> {
    /// The task; `None` once the output was read (the task was let go of
    /// then, so that its memory goes back at once).
    raw: Option<NonNull<Header>>,
    _marker: PhantomData<(T, *const ())>,
}

// SAFETY: the handle touches the task's atomic state, its join waker slot
// (under the JOIN_WAKER protocol of `raw.rs`) and, once COMPLETE is seen (Acquire, after the runtime wrote
// it), the output, which it moves or drops: allowed on any thread when `T`
// is Send. The future itself is never touched by the handle.
unsafe impl<T: Send> Send for JoinHandle<T> {}
// SAFETY: `&JoinHandle` only gives `abort` and `is_finished`, which use
// the atomic state and the thread-safe `schedule`.
unsafe impl<T: Send> Sync for JoinHandle<T> {}

// The handle holds no pinned data (the task lives in its own allocation),
// so it can be awaited through `&mut` whatever `T` is.
impl<T> Unpin for JoinHandle<T> {}

impl<T> JoinHandle<T> {
    /// Takes over one reference to the task.
    pub(crate) fn new(raw: NonNull<Header>) -> Self {
        JoinHandle {
            raw: Some(raw),
            _marker: PhantomData,
        }
    }

    /// Cancels the task: it is not polled again and its future is dropped
    /// (on the runtime's thread, at its next turn). Awaiting the handle then
    /// gives a [`JoinError`] for which [`is_cancelled`](JoinError::is_cancelled)
    /// is true, unless the task had already finished. For a task of
    /// [`spawn_blocking`](crate::spawn_blocking), the closure itself keeps
    /// running: threads cannot be interrupted.
    pub fn abort(&self) {
        // (Without the task, the handle already gave its output.)
        let Some(raw) = self.raw else { return };
        // SAFETY: the handle owns a reference, so the task is live.
        let prev = unsafe { raw.as_ref() }
            .state
            .fetch_or(CANCELLED, Ordering::AcqRel);
        if prev & COMPLETE == 0 {
            // SAFETY: we hold a reference.
            unsafe { task::schedule(raw) };
        }
    }

    /// Whether the task has finished (returned, panicked or been cancelled).
    pub fn is_finished(&self) -> bool {
        // SAFETY: the handle owns a reference, so the task is live.
        self.raw
            .is_none_or(|raw| unsafe { raw.as_ref() }.state.load(Ordering::Acquire) & COMPLETE != 0)
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(raw) = self.raw else {
            panic!("JoinHandle polled again after it returned the task's output")
        };
        // SAFETY: the handle owns a reference, so the task is live.
        let header = unsafe { raw.as_ref() };
        let state = header.state.load(Ordering::Acquire);
        if state & COMPLETE == 0 && !header.set_join_waker(state, cx.waker()) {
            // Not complete when the waker was stored: the completion wakes it.
            return Poll::Pending;
        }
        let mut out: Poll<Result<T, JoinError>> = Poll::Pending;
        // SAFETY: COMPLETE was seen with Acquire; the handle is on the
        // runtime's thread, or `T` is Send (otherwise the handle could not
        // have left that thread); `out` has the type the task's vtable
        // writes; the handle gives its reference up here, once (`raw` is
        // cleared, so `drop` does nothing more).
        // Nothing more to get from the task, which is let go of at once.
        unsafe { task::take_output(raw, (&mut out as *mut Poll<_>).cast()) };
        self.raw = None;
        out
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        if let Some(raw) = self.raw {
            // SAFETY: called once, by the handle, which owns a reference; on
            // the runtime's thread or `T` is Send (so the unread output, if
            // any, may be dropped here).
            unsafe { task::drop_join_handle(raw) };
        }
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}
