//! The raw submission API: [`Op`] and [`Multishot`] futures over any SQE
//! and the data it points at, and the typed operations' way in.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use crate::driver::kind::AnyDriver;
use crate::driver::lifecycle::{Completion, Parked};
use crate::driver::sys;
use crate::op::ready::ReadyMulti;
use crate::scheduler::{expect_current, Core};

/// An SQE, as built by `io_uring::opcode::*::build()`.
pub type Entry = io_uring::squeue::Entry;

/// A single-shot operation in flight: a future of its [`Completion`] and
/// its data back.
///
/// Dropping it before completion cancels the operation; see the
/// [module docs](crate::op) for what happens to the data.
#[must_use = "an Op is cancelled when dropped; .await it"]
pub struct Op<T: 'static> {
    pub(super) core: Rc<Core>,
    pub(super) key: usize,
    /// `None` once the completion was handed out.
    pub(super) data: Option<T>,
}

// The data is only ever pointed at through its heap allocations (the submit
// contract), so moving an `Op` is fine whatever `T` is.
impl<T: 'static> Unpin for Op<T> {}

impl<T: 'static> Op<T> {
    /// Pushes the SQE that `build` makes from `data` and returns the
    /// operation's future. The SQE goes to the kernel with the runtime's
    /// next batch, whether or not the future is polled.
    ///
    /// io_uring only: on the epoll driver ([`crate::DriverKind::Epoll`])
    /// nothing is submitted and the completion is `EOPNOTSUPP`
    /// (`ErrorKind::Unsupported`); typed operations
    /// ([`Operation`](crate::op::Operation)) run on both drivers.
    ///
    /// # Safety
    ///
    /// Every pointer in the SQE must point into heap memory owned by
    /// `data` (which keeps its address when `data` moves) or into `'static`
    /// memory, and every descriptor it names must stay open until the
    /// operation completes. See the [module docs](crate::op).
    ///
    /// # Panics
    ///
    /// If no runtime is running on this thread.
    pub unsafe fn submit(mut data: T, build: impl FnOnce(&mut T) -> Entry) -> Op<T> {
        let core = expect_current("runtime::op::Op::submit");
        let entry = build(&mut data);
        let creates = sys::creates(&entry);
        // SAFETY: the caller's promise covers the SQE's memory; `data` is
        // kept by this Op or parked in the driver until the last CQE.
        let key = unsafe { core.driver.borrow_mut().submit(entry, false, creates) };
        Op {
            core,
            key,
            data: Some(data),
        }
    }

    /// The future of an op whose slot `key` was reserved in the driver and
    /// whose SQE is (or will be, by its chain) pushed.
    ///
    /// # Safety
    ///
    /// The SQE of slot `key` points only at memory owned by `data` as
    /// [`Op::submit`] requires, and the slot gets a completion (a CQE, or
    /// a local one if the SQE is never pushed).
    pub(crate) unsafe fn from_reserved(core: Rc<Core>, key: usize, data: T) -> Op<T> {
        Op {
            core,
            key,
            data: Some(data),
        }
    }
}

impl<T: 'static> Future for Op<T> {
    type Output = (Completion, T);

    #[inline(always)]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        assert!(
            self.data.is_some(),
            "runtime::op::Op polled after completion"
        );
        let ready = {
            let mut driver = self.core.driver.borrow_mut();
            // Matched here rather than through `AnyDriver::poll_single`, so
            // that the ring path inlines as it did before the epoll driver.
            match &mut *driver {
                AnyDriver::Uring(ring) => ring.poll_single(self.key, cx),
                AnyDriver::Epoll(epoll) => epoll.poll_stand_in(self.key).map(|(c, _)| c),
            }
        };
        match ready {
            Poll::Ready(completion) => {
                let data = self.data.take().expect("checked above");
                Poll::Ready((completion, data))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: 'static> Drop for Op<T> {
    fn drop(&mut self) {
        if let Some(data) = self.data.take() {
            park(&self.core, self.key, Box::new(data));
        }
    }
}

/// Hands the data of a dropped operation to the driver; drops it here (not
/// under the driver's borrow) if the kernel is already done with it.
fn park(core: &Core, key: usize, data: Parked) {
    let released = {
        let mut driver = core.driver.borrow_mut();
        driver.ignore(key, data);
        driver.take_released()
    };
    drop(released);
}

/// A multishot operation in flight (accept, receive, poll, timeout with
/// `IORING_TIMEOUT_MULTISHOT`, ...): a stream of its [`Completion`]s, in
/// the order the kernel posted them, ending after the CQE without
/// `IORING_CQE_F_MORE`.
///
/// Results that arrive while nobody polls are queued, none lost. Dropping
/// the stream before its end cancels the operation.
#[must_use = "a Multishot is cancelled when dropped; poll it"]
pub struct Multishot<T: 'static> {
    pub(super) core: Rc<Core>,
    pub(super) key: usize,
    /// The data, while the kernel may use it.
    pub(super) data: Option<T>,
    /// The slot was freed (the stream ended).
    pub(super) ended: bool,
    /// On the epoll driver: the operation performed once per readiness
    /// (then `key` names no slot).
    pub(super) ready: Option<ReadyMulti<T>>,
}

impl<T: 'static> Unpin for Multishot<T> {}

impl<T: 'static> Multishot<T> {
    /// Pushes a multishot SQE made by `build` from `data` and returns the
    /// stream of its completions.
    ///
    /// io_uring only: on the epoll driver the stream yields one
    /// `EOPNOTSUPP` completion and ends.
    ///
    /// # Safety
    ///
    /// As for [`Op::submit`], for as long as the kernel may post CQEs for
    /// the operation.
    ///
    /// # Panics
    ///
    /// If no runtime is running on this thread.
    pub unsafe fn submit(mut data: T, build: impl FnOnce(&mut T) -> Entry) -> Multishot<T> {
        let core = expect_current("runtime::op::Multishot::submit");
        let entry = build(&mut data);
        let creates = sys::creates(&entry);
        // SAFETY: as in Op::submit.
        let key = unsafe { core.driver.borrow_mut().submit(entry, true, creates) };
        Multishot {
            core,
            key,
            data: Some(data),
            ended: false,
            ready: None,
        }
    }

    /// The next completion; `Ready(None)` once the operation is over.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Completion>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if let Some(ready) = &mut self.ready {
            let data = self
                .data
                .as_mut()
                .expect("data is present until into_inner");
            let (completion, last) = std::task::ready!(ready.poll_next(&self.core, data, cx));
            self.ended = last;
            return Poll::Ready(Some(completion));
        }
        let polled = self.core.driver.borrow_mut().poll_multi(self.key, cx);
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                self.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some((completion, last))) => {
                // The slot was freed with the last result.
                self.ended = last;
                Poll::Ready(Some(completion))
            }
        }
    }

    /// The next completion, or `None` once the operation is over.
    pub async fn next(&mut self) -> Option<Completion> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// Asks the kernel to stop the operation. Completions already posted
    /// (and the final one, usually `ECANCELED`) are still delivered by the
    /// stream, which then ends.
    pub fn cancel(&self) {
        if self.ended {
            return;
        }
        if let Some(ready) = &self.ready {
            ready.cancel();
            return;
        }
        self.core.driver.borrow_mut().request_cancel(self.key);
    }

    /// Whether the stream has ended: its last completion was handed out, so
    /// the kernel is done with the operation and the next poll gives
    /// `None`.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// The data, while the stream holds it (until
    /// [`into_inner`](Self::into_inner)).
    pub fn get_ref(&self) -> Option<&T> {
        self.data.as_ref()
    }

    /// Gives the data back once the stream has ended; before that, the
    /// kernel may still use it, so the stream is returned unchanged.
    pub fn into_inner(mut self) -> Result<T, Self> {
        if self.ended {
            Ok(self.data.take().expect("data is present until into_inner"))
        } else {
            Err(self)
        }
    }
}

impl<T: 'static> futures_core::Stream for Multishot<T> {
    type Item = Completion;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Completion>> {
        Multishot::poll_next(self.get_mut(), cx)
    }
}

impl<T: 'static> Drop for Multishot<T> {
    fn drop(&mut self) {
        if self.ended || self.ready.is_some() {
            // Over, or never in the kernel (epoll): the data just goes.
            return;
        }
        let data: Parked = match self.data.take() {
            Some(d) => Box::new(d),
            None => Box::new(()),
        };
        park(&self.core, self.key, data);
    }
}

impl<T: 'static> fmt::Debug for Op<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Op").field("key", &self.key).finish()
    }
}

impl<T: 'static> fmt::Debug for Multishot<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Multishot")
            .field("key", &self.key)
            .field("ended", &self.ended)
            .finish()
    }
}

/// The number of operations the current runtime tracks: in flight in the
/// kernel, or completed with a result nobody took yet. Useful to check that
/// nothing leaks.
///
/// # Panics
///
/// If no runtime is running on this thread.
pub fn in_flight() -> usize {
    expect_current("runtime::op::in_flight")
        .driver
        .borrow()
        .in_flight()
}

/// Registers the current runtime's table of **direct descriptors** if it
/// is not yet (an empty, sparse table: `IORING_REGISTER_FILES` with
/// `IORING_RSRC_REGISTER_SPARSE`, Linux 5.19+) and returns its number of
/// slots (see [`Builder::direct_descriptors`](crate::Builder::direct_descriptors)).
///
/// A direct descriptor is a slot of this table: operations name it with
/// `IOSQE_FIXED_FILE` (see [`with_target!`](crate::with_target)) and skip
/// the kernel's per-operation lookup of the file in the process's
/// descriptor table; an accept or open can create one directly with
/// `IORING_FILE_INDEX_ALLOC` (the kernel picks a free slot and the result
/// is its index). A successful result of such an operation whose future
/// was dropped is closed by the runtime, like an ordinary descriptor.
///
/// Errors: `Unsupported` on kernels without sparse tables and on the epoll
/// driver; the kernel's
/// `EMFILE` (with an explanation) when the table would be larger than the
/// `RLIMIT_NOFILE` soft limit.
///
/// ```
/// # runtime::block_on(async {
/// let slots = runtime::op::direct_table()?;
/// assert!(slots >= 1);
/// # Ok::<(), std::io::Error>(())
/// # }).unwrap();
/// ```
///
/// # Panics
///
/// If no runtime is running on this thread.
pub fn direct_table() -> io::Result<u32> {
    expect_current("runtime::op::direct_table")
        .driver
        .borrow_mut()
        .direct_table()
}

/// Whether an accept into the direct-descriptor table can work now: the
/// kernel has direct descriptors ([`crate::Features::direct_descriptors`]),
/// the table is registered (now, if it was not yet) and fewer slots are
/// held than it has (`Metrics::direct_descriptors`). `Ok(false)` means
/// "use an ordinary descriptor"; errors are those of [`direct_table`]
/// other than `Unsupported`.
///
/// # Panics
///
/// If no runtime is running on this thread.
pub fn direct_slot_free() -> io::Result<bool> {
    expect_current("runtime::op::direct_slot_free")
        .driver
        .borrow_mut()
        .direct_slot_free()
}
