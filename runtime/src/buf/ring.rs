//! Provided buffer rings (`IORING_REGISTER_PBUF_RING`): a pool of
//! equal-sized buffers the kernel picks from when data arrives, so that an
//! idle connection holds no buffer at all.
//!
//! A [`BufRing`] is registered on the runtime running on this thread under
//! a buffer group id. Operations submitted with `IOSQE_BUFFER_SELECT` and
//! that group id (a multishot receive, see `net`'s `recv_multishot`, or a
//! one-shot receive) let the kernel take a buffer from the ring only when it
//! has bytes to put in it; the CQE says which buffer ([`Completion::buffer_id`]).
//! [`BufRing::chunk`] turns that CQE into a [`BufRingChunk`], which derefs to
//! the received bytes and gives its buffer back to the ring when dropped.
//!
//! ```
//! use runtime::bufring::BufRing;
//!
//! # runtime::block_on(async {
//! // 64 buffers of 4 KiB each, registered on this runtime's ring.
//! let ring = BufRing::builder().entries(64).buf_size(4096).build()?;
//! assert_eq!(ring.entries(), 64);
//! assert_eq!(ring.buf_size(), 4096);
//! assert_eq!(ring.held(), 0);
//! // Nothing was received yet: the kernel can pick any of the 64 buffers.
//! assert_eq!(ring.available()?, 64);
//! # Ok::<(), std::io::Error>(())
//! # }).unwrap();
//! ```
//!
//! The pieces, in one example: a multishot receive submitted through
//! [`op`](crate::op) (what `net`'s `recv_multishot` does for you), its CQEs
//! turned into chunks with [`BufRing::chunk`], a [`BufRingChunk`] read and
//! dropped, and the operation handed back with
//! [`BufRing::release_multishot`] when it is no longer wanted:
//!
//! ```
//! use runtime::bufring::BufRing;
//! use runtime::op::{io_uring::{opcode, types}, Multishot};
//! use std::io::Write;
//! use std::os::fd::AsRawFd;
//!
//! # runtime::block_on(async {
//! let ring = BufRing::builder().entries(4).buf_size(8).build()?;
//! let (a, mut b) = std::os::unix::net::UnixStream::pair()?;
//! let fd = a.as_raw_fd();
//! // SAFETY: the SQE names no memory (the kernel picks buffers of the ring,
//! // a clone of which the op data keeps), and `a` outlives the op.
//! let mut op = unsafe {
//!     Multishot::submit(ring.clone(), |r| {
//!         opcode::RecvMulti::new(types::Fd(fd), r.group_id()).build()
//!     })
//! };
//! b.write_all(b"0123456789")?; // 10 bytes: two buffers of 8
//! let mut got = Vec::new();
//! while got.len() < 10 {
//!     let completion = op.next().await.expect("the receive goes on");
//!     // SAFETY: a CQE of a receive selecting from `ring`, looked at once.
//!     let chunk = unsafe { ring.chunk(&completion) }.expect("a buffer");
//!     got.extend_from_slice(&chunk); // dropping `chunk` returns its buffer
//! }
//! assert_eq!(got, b"0123456789");
//! assert_eq!(ring.held(), 0);
//! // SAFETY: every CQE of `op` selects from `ring`; none is pending here.
//! unsafe { ring.release_multishot(op) };
//! # drop(a);
//! # Ok::<(), std::io::Error>(())
//! # }).unwrap();
//! ```
//!
//! # When the pool is empty
//!
//! When every buffer is in a [`BufRingChunk`] the user still holds (or in
//! CQEs not looked at yet), an operation that needs one fails with
//! `ENOBUFS`; a multishot receive stops there. Nothing is lost: the bytes
//! stay in the socket. [`BufRing::returned`] counts the buffers given back
//! so far and [`BufRing::wait_returned`] waits until one more comes back, so
//! a receive can be re-armed as soon as it can succeed, without spinning.
//!
//! # Memory safety
//!
//! The ring and the buffers are freed only when the last [`BufRing`]
//! clone, the last [`BufRingChunk`] and the last operation that may select
//! from the ring are gone (every such operation keeps a clone in its data,
//! which the runtime keeps until the operation's last CQE), and only after
//! the group was unregistered from the kernel. If the runtime gives up on
//! operations at shutdown (they leak their data), the ring leaks with them.
//! Whoever submits their own operations with this ring's
//! [`group_id`](BufRing::group_id) must do the same: keep a clone of the
//! `BufRing` in the operation's data.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::io;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::ptr::{self, NonNull};
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::task::{Context, Poll, Waker};

use std::alloc::{alloc_zeroed, dealloc, Layout};

use crate::buf::page_size;
use crate::op::{Completion, Multishot};
use crate::scheduler::{current, expect_current, Core};

use crate::driver::resources::GroupKind;
use crate::driver::sys::{BufRingEntry as RawEntry, MAX_BUF_RING_ENTRIES as MAX_ENTRIES};

/// Settings of a [`BufRing`]; made by [`BufRing::builder`].
///
/// ```
/// # runtime::block_on(async {
/// let ring = runtime::bufring::BufRing::builder()
///     .entries(16)
///     .buf_size(1024)
///     .build()?;
/// assert_eq!((ring.entries(), ring.buf_size()), (16, 1024));
/// # Ok::<(), std::io::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    entries: u32,
    buf_size: usize,
    group_id: Option<u16>,
}

impl Builder {
    /// The number of buffers: a power of two from 1 to 32768. Default 256.
    pub fn entries(mut self, entries: u32) -> Self {
        self.entries = entries;
        self
    }

    /// The size of each buffer in bytes, from 1 to `u32::MAX`. Default
    /// 4096.
    pub fn buf_size(mut self, size: usize) -> Self {
        self.buf_size = size;
        self
    }

    /// Uses this buffer group id instead of allocating a free one. Fails
    /// with `AlreadyExists` if the group is taken on this ring.
    pub fn group_id(mut self, id: u16) -> Self {
        self.group_id = Some(id);
        self
    }

    /// Allocates the ring and its buffers and registers them on the runtime
    /// running on this thread.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a bad entry count or buffer size, `OutOfMemory`
    /// if the memory cannot be allocated, `AlreadyExists` if an explicit
    /// group id is taken, `Unsupported` on kernels without buffer rings
    /// and on the epoll driver
    /// (before 5.19; [`crate::Features::buffer_rings`]: receive with
    /// `read` into your own buffers there), and the errors of
    /// `io_uring_register(2)`.
    ///
    /// # Panics
    ///
    /// If no runtime is running on this thread.
    pub fn build(&self) -> io::Result<BufRing> {
        let core = expect_current("runtime::bufring::Builder::build");
        if !core.driver.borrow_mut().features().buffer_rings {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                if core.driver.borrow().kind() == crate::DriverKind::Epoll {
                    "provided-buffer rings (runtime::bufring::BufRing) need io_uring, and this \
                     runtime runs on the epoll driver: receive with read() into your own \
                     buffers instead"
                } else {
                    "this kernel has no provided buffer rings (IORING_REGISTER_PBUF_RING, \
                     Linux 5.19+): receive with read() into your own buffers instead"
                },
            ));
        }
        if !self.entries.is_power_of_two() || self.entries > MAX_ENTRIES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "buffer ring entries must be a power of two from 1 to {MAX_ENTRIES}, got {}",
                    self.entries
                ),
            ));
        }
        if self.buf_size == 0 || self.buf_size > u32::MAX as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "buffer ring buffer size must be from 1 to {}, got {}",
                    u32::MAX,
                    self.buf_size
                ),
            ));
        }
        let entries = self.entries as usize;
        let oom = || io::Error::new(io::ErrorKind::OutOfMemory, "buffer ring allocation failed");
        let ring_layout =
            Layout::from_size_align(entries * std::mem::size_of::<RawEntry>(), page_size())
                .map_err(|_| oom())?;
        let bufs_layout = entries
            .checked_mul(self.buf_size)
            .and_then(|n| Layout::from_size_align(n, 64).ok())
            .ok_or_else(oom)?;
        // SAFETY: both layouts have a non-zero size (entries >= 1, and
        // buf_size >= 1).
        let ring = NonNull::new(unsafe { alloc_zeroed(ring_layout) }.cast::<RawEntry>())
            .ok_or_else(oom)?;
        // SAFETY: as above.
        let Some(bufs) = NonNull::new(unsafe { alloc_zeroed(bufs_layout) }) else {
            // SAFETY: allocated just above with this layout.
            unsafe { dealloc(ring.as_ptr().cast(), ring_layout) };
            return Err(oom());
        };
        let inner = Inner {
            bgid: 0,
            mask: (self.entries - 1) as u16,
            entries: self.entries,
            buf_size: self.buf_size,
            ring,
            ring_layout,
            bufs,
            bufs_layout,
            tail: Cell::new(0),
            hist: RefCell::new(std::collections::VecDeque::with_capacity(2 * entries)),
            hist_base: Cell::new(0),
            pos_of: (0..entries).map(|_| Cell::new(0)).collect(),
            held: Cell::new(0),
            returned: Cell::new(0),
            waiters: RefCell::new(Vec::new()),
            registered: false,
            core,
        };
        // Hand every buffer to the kernel before registering.
        for bid in 0..self.entries {
            inner.push(bid as u16);
        }
        inner.publish_tail();
        let mut inner = inner;
        inner.bgid = register(&inner, self.group_id)?;
        inner.registered = true;
        Ok(BufRing {
            inner: Rc::new(inner),
        })
    }
}

/// A provided buffer ring registered on a runtime. Cheap to clone (the
/// clones share the ring). See the [module docs](self).
///
/// ```
/// # runtime::block_on(async {
/// let ring = runtime::bufring::BufRing::builder().entries(8).buf_size(512).build()?;
/// let other = ring.clone();
/// assert_eq!(ring.group_id(), other.group_id());
/// # Ok::<(), std::io::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct BufRing {
    inner: Rc<Inner>,
}

struct Inner {
    /// Keeps the runtime's ring open while the group is registered.
    core: Rc<Core>,
    bgid: u16,
    mask: u16,
    entries: u32,
    buf_size: usize,
    ring: NonNull<RawEntry>,
    ring_layout: Layout,
    bufs: NonNull<u8>,
    bufs_layout: Layout,
    /// Our copy of the tail: entries pushed so far (wrapping).
    tail: Cell<u16>,
    /// The ring's history, to find the buffers of a bundle: the buffer
    /// pushed at each absolute ring position from `hist_base` on, with
    /// whether a CQE accounted for it yet (the kernel takes buffers in
    /// ring order; a bundle CQE names the first one only). Positions whose
    /// CQE was seen are dropped from the front.
    hist: RefCell<std::collections::VecDeque<(u16, bool)>>,
    hist_base: Cell<u64>,
    /// The absolute position each buffer was last pushed at.
    pos_of: Box<[Cell<u64>]>,
    /// Buffers in chunks the user holds.
    held: Cell<usize>,
    /// Buffers given back to the kernel since creation.
    returned: Cell<u64>,
    /// Tasks waiting for a buffer to come back.
    waiters: RefCell<Vec<Waker>>,
    registered: bool,
}

impl BufRing {
    /// A builder with the defaults: 256 buffers of 4096 bytes, a group id
    /// allocated from the ones free on this runtime.
    pub fn builder() -> Builder {
        Builder {
            entries: 256,
            buf_size: 4096,
            group_id: None,
        }
    }

    /// The buffer group id, for building SQEs with `IOSQE_BUFFER_SELECT`
    /// (such an operation must keep a clone of this `BufRing` in its data).
    pub fn group_id(&self) -> u16 {
        self.inner.bgid
    }

    /// The number of buffers in the pool.
    pub fn entries(&self) -> u32 {
        self.inner.entries
    }

    /// The size of each buffer.
    pub fn buf_size(&self) -> usize {
        self.inner.buf_size
    }

    /// The number of buffers in [`BufRingChunk`]s still alive.
    pub fn held(&self) -> usize {
        self.inner.held.get()
    }

    /// The number of buffers given back to the ring since it was created:
    /// grows by one each time a [`BufRingChunk`] is dropped.
    pub fn returned(&self) -> u64 {
        self.inner.returned.get()
    }

    /// The number of buffers the kernel can pick right now, as the kernel
    /// sees it (`IORING_REGISTER_PBUF_STATUS`, Linux 6.8+): the pool minus
    /// buffers in chunks and buffers in CQEs not turned into chunks yet.
    ///
    /// # Errors
    ///
    /// `InvalidInput` on kernels without `IORING_REGISTER_PBUF_STATUS`.
    pub fn available(&self) -> io::Result<u32> {
        let head = self
            .inner
            .core
            .driver
            .borrow()
            .buf_ring_head(self.inner.bgid)?;
        Ok(self.inner.tail.get().wrapping_sub(head) as u32)
    }

    /// Waits until [`returned`](Self::returned) is past `since`, that is
    /// until a buffer came back after that count was read. Used to re-arm
    /// a receive that failed with `ENOBUFS` only once it can succeed.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// # runtime::block_on(async {
    /// let ring = runtime::bufring::BufRing::builder().entries(4).build()?;
    /// let before = ring.returned();
    /// // No chunk is dropped here, so this would wait forever.
    /// let waited = runtime::time::timeout(Duration::from_millis(1), ring.wait_returned(before));
    /// assert!(waited.await.is_err());
    /// // A count read before some buffer came back is ready at once.
    /// ring.wait_returned(before.wrapping_sub(1)).await;
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn wait_returned(&self, since: u64) -> WaitReturned<'_> {
        WaitReturned { ring: self, since }
    }

    /// Polls for the condition of [`wait_returned`](Self::wait_returned).
    pub fn poll_returned(&self, since: u64, cx: &mut Context<'_>) -> Poll<()> {
        if self.inner.returned.get() != since {
            return Poll::Ready(());
        }
        let mut waiters = self.inner.waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Turns a CQE of an operation that selected from this ring into the
    /// received bytes: `Some` if the CQE carries a buffer
    /// (`IORING_CQE_F_BUFFER`), holding the `max(result, 0)` bytes the
    /// kernel wrote; `None` if it carries none.
    ///
    /// # Safety
    ///
    /// `completion` must come from an operation that selected with this
    /// ring's group id on this ring, and be passed here at most once (its
    /// buffer is given back when the chunk is dropped).
    ///
    /// ```
    /// use runtime::bufring::BufRing;
    /// use runtime::op::{io_uring::{opcode, squeue, types}, Op};
    /// use std::os::fd::AsRawFd;
    ///
    /// # runtime::block_on(async {
    /// let ring = BufRing::builder().entries(4).buf_size(64).build()?;
    /// let (a, mut b) = std::os::unix::net::UnixStream::pair()?;
    /// std::io::Write::write_all(&mut b, b"hello")?;
    /// let fd = a.as_raw_fd();
    /// // SAFETY: the SQE names no memory (the kernel picks a buffer of the
    /// // ring, a clone of which the op data keeps) and `a` outlives the op.
    /// let op = unsafe {
    ///     Op::submit(ring.clone(), |r| {
    ///         opcode::Recv::new(types::Fd(fd), std::ptr::null_mut(), 64)
    ///             .buf_group(r.group_id())
    ///             .build()
    ///             .flags(squeue::Flags::BUFFER_SELECT)
    ///     })
    /// };
    /// let (completion, ring) = op.await;
    /// // SAFETY: the completion is that of a recv selecting from `ring`.
    /// let chunk = unsafe { ring.chunk(&completion) }.expect("a buffer");
    /// assert_eq!(&chunk[..], b"hello");
    /// assert_eq!(ring.held(), 1);
    /// drop(chunk);
    /// assert_eq!(ring.held(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    pub unsafe fn chunk(&self, completion: &Completion) -> Option<BufRingChunk> {
        let mut first = None;
        // SAFETY: the caller's promise.
        unsafe {
            self.chunks(completion, |c| {
                // A CQE of a single-buffer operation holds one buffer; a
                // bundle's further buffers go back to the ring at once.
                if first.is_none() {
                    first = Some(c);
                }
            })
        };
        first
    }

    /// Like [`chunk`](Self::chunk) for CQEs that may hold several buffers
    /// (a bundle receive, `IORING_RECVSEND_BUNDLE`): calls `each` with one
    /// chunk per buffer, in order (one call, possibly empty, for a CQE with
    /// a single buffer; none for a CQE without a buffer).
    ///
    /// # Safety
    ///
    /// As for [`chunk`](Self::chunk).
    ///
    /// ```
    /// use runtime::bufring::BufRing;
    /// use runtime::op::{io_uring::{opcode, types}, Multishot};
    /// use std::io::Write;
    /// use std::os::fd::AsRawFd;
    ///
    /// # runtime::block_on(async {
    /// if !runtime::features().recv_bundle {
    ///     return Ok(()); // Linux before 6.10
    /// }
    /// let ring = BufRing::builder().entries(8).buf_size(4).build()?;
    /// let (a, mut b) = std::os::unix::net::UnixStream::pair()?;
    /// b.write_all(b"0123456789")?;
    /// let fd = a.as_raw_fd();
    /// // SAFETY: as in the module example.
    /// let mut op = unsafe {
    ///     Multishot::submit(ring.clone(), |r| {
    ///         opcode::RecvMultiBundle::new(types::Fd(fd), r.group_id()).build()
    ///     })
    /// };
    /// let mut got: Vec<Vec<u8>> = Vec::new();
    /// while got.iter().map(Vec::len).sum::<usize>() < 10 {
    ///     let completion = op.next().await.expect("the receive goes on");
    ///     // SAFETY: a CQE of a receive selecting from `ring`, looked at once.
    ///     unsafe { ring.chunks(&completion, |c| got.push(c.to_vec())) };
    /// }
    /// // Buffers of 4 bytes: "0123", "4567", "89", however many CQEs.
    /// assert_eq!(got.concat(), b"0123456789");
    /// assert!(got.iter().all(|c| c.len() <= 4));
    /// // SAFETY: every CQE of `op` selects from `ring`.
    /// unsafe { ring.release_multishot(op) };
    /// # drop(a);
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    pub unsafe fn chunks(&self, completion: &Completion, mut each: impl FnMut(BufRingChunk)) {
        let Some(bid) = completion.buffer_id() else {
            return;
        };
        assert!(
            (bid as u32) < self.inner.entries,
            "runtime::bufring: buffer id {bid} out of range for a ring of {} buffers",
            self.inner.entries
        );
        let len = completion.raw_result().max(0) as usize;
        let (first, count) = self.inner.mark_run(bid, len);
        let mut left = len;
        for i in 0..count {
            let n = left.min(self.inner.buf_size);
            left -= n;
            let bid = self.inner.bid_at(first + i as u64);
            self.inner.held.set(self.inner.held.get() + 1);
            each(BufRingChunk {
                ring: self.inner.clone(),
                bid,
                len: n,
            });
        }
        self.inner.prune();
    }

    /// Takes over a multishot operation that selects from this ring and
    /// that nobody will poll any more (or a single-shot one submitted with
    /// [`Multishot::submit`], which ends after its one CQE): cancels it and gives back the
    /// buffer of every CQE it still posts (a dropped [`Multishot`] would
    /// lose them from the pool). The bytes in them are dropped. Its data is
    /// kept until the last CQE, as for any dropped operation.
    ///
    /// # Safety
    ///
    /// Every CQE of `op` must be one [`chunk`](Self::chunk) accepts, and
    /// none of them was passed to `chunk` already.
    pub unsafe fn release_multishot<T: 'static>(&self, mut op: Multishot<T>) {
        op.cancel();
        // Results already queued are given back now.
        let mut cx = Context::from_waker(Waker::noop());
        while let Poll::Ready(Some(c)) = op.poll_next(&mut cx) {
            // SAFETY: the caller's promise.
            unsafe { self.chunks(&c, drop) };
        }
        if op.is_ended() {
            return;
        }
        let Some(core) = current() else {
            return;
        };
        let ring = self.clone();
        drop(core.spawn(async move {
            while let Some(c) = op.next().await {
                // SAFETY: the caller's promise.
                unsafe { ring.chunks(&c, drop) };
            }
        }));
    }
}

impl fmt::Debug for BufRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufRing")
            .field("group_id", &self.inner.bgid)
            .field("entries", &self.inner.entries)
            .field("buf_size", &self.inner.buf_size)
            .field("held", &self.inner.held.get())
            .finish()
    }
}

/// The future of [`BufRing::wait_returned`] (see its example).
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct WaitReturned<'a> {
    ring: &'a BufRing,
    since: u64,
}

impl Future for WaitReturned<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.ring.poll_returned(self.since, cx)
    }
}

/// Bytes the kernel received into a buffer of a [`BufRing`]; the buffer
/// goes back to the ring when this is dropped.
///
/// Derefs to the received bytes (mutable too: the buffer is the chunk's
/// until it is dropped). It is an [`IoBuf`](crate::buf::IoBuf), so it can
/// be written out as it is (`stream.write_all(chunk)`, no copy); the buffer
/// returns to the ring when the write gives the chunk back and it is
/// dropped.
///
/// ```
/// # fn show(chunk: runtime::bufring::BufRingChunk) {
/// let bytes: &[u8] = &chunk;
/// println!("{} bytes from buffer {}", bytes.len(), chunk.buffer_id());
/// drop(chunk); // back to the ring
/// # }
/// ```
pub struct BufRingChunk {
    ring: Rc<Inner>,
    bid: u16,
    len: usize,
}

impl BufRingChunk {
    /// The buffer's id within its ring.
    pub fn buffer_id(&self) -> u16 {
        self.bid
    }

    /// Shortens the chunk to its first `len` bytes (no effect if it is not
    /// longer).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

impl Deref for BufRingChunk {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: the buffer lies inside the allocation (bid < entries),
        // len <= buf_size bytes of it were written by the kernel (or zeroed
        // at allocation), and while this chunk lives the kernel cannot
        // select the buffer again (it is not in the ring).
        unsafe { std::slice::from_raw_parts(self.ring.buf_ptr(self.bid), self.len) }
    }
}

impl DerefMut for BufRingChunk {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; this chunk is the buffer's only user.
        unsafe { std::slice::from_raw_parts_mut(self.ring.buf_ptr(self.bid), self.len) }
    }
}

// SAFETY: the pointer is into the ring's buffer allocation, which the
// chunk's `Rc<Inner>` keeps alive and which never moves; the buffer is not
// in the ring while the chunk exists, so the kernel cannot select it and
// write into it, and a write op that owns the chunk keeps it (and so keeps
// the buffer out of the ring) until its CQE. `len` bytes are initialised.
unsafe impl crate::buf::IoBuf for BufRingChunk {
    fn stable_ptr(&self) -> *const u8 {
        self.ring.buf_ptr(self.bid)
    }

    fn bytes_init(&self) -> usize {
        self.len
    }

    fn bytes_total(&self) -> usize {
        self.len
    }
}

impl AsRef<[u8]> for BufRingChunk {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl fmt::Debug for BufRingChunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufRingChunk")
            .field("buffer_id", &self.bid)
            .field("len", &self.len)
            .finish()
    }
}

impl Drop for BufRingChunk {
    fn drop(&mut self) {
        let inner = &*self.ring;
        inner.push(self.bid);
        inner.publish_tail();
        inner.held.set(inner.held.get() - 1);
        inner.returned.set(inner.returned.get().wrapping_add(1));
        let waiters = std::mem::take(&mut *inner.waiters.borrow_mut());
        for w in waiters {
            w.wake();
        }
    }
}

impl Inner {
    fn buf_ptr(&self, bid: u16) -> *mut u8 {
        // SAFETY: bid < entries, so the offset stays inside the buffers'
        // allocation of entries * buf_size bytes.
        unsafe { self.bufs.as_ptr().add(bid as usize * self.buf_size) }
    }

    /// Writes buffer `bid` at our tail (not yet visible to the kernel).
    fn push(&self, bid: u16) {
        let tail = self.tail.get();
        let idx = (tail & self.mask) as usize;
        // SAFETY: idx < entries, inside the ring allocation; the kernel
        // only reads entries between its head and the published tail, and
        // this one is past the tail. Fields are written one by one through
        // raw pointers, so entry 0's `resv` (the tail, which the kernel
        // reads) is not touched.
        unsafe {
            let e = self.ring.as_ptr().add(idx);
            ptr::addr_of_mut!((*e).addr).write(self.buf_ptr(bid) as u64);
            ptr::addr_of_mut!((*e).len).write(self.buf_size as u32);
            ptr::addr_of_mut!((*e).bid).write(bid);
        }
        self.tail.set(tail.wrapping_add(1));
        let mut hist = self.hist.borrow_mut();
        self.pos_of[bid as usize].set(self.hist_base.get() + hist.len() as u64);
        hist.push_back((bid, false));
    }

    /// Marks as accounted for the buffers a CQE that starts at `bid` and
    /// holds `len` bytes took: `bid` and the ones pushed right after it,
    /// one per `buf_size` bytes (at least one). Returns the absolute
    /// position of the first and how many there are.
    fn mark_run(&self, bid: u16, len: usize) -> (u64, usize) {
        let count = len.div_ceil(self.buf_size).max(1);
        let first = self.pos_of[bid as usize].get();
        let mut hist = self.hist.borrow_mut();
        let start = (first - self.hist_base.get()) as usize;
        for i in 0..count {
            let Some(slot) = hist.get_mut(start + i) else {
                debug_assert!(false, "a CQE names buffers never pushed");
                return (first, i);
            };
            debug_assert!(!slot.1, "a buffer accounted for twice");
            slot.1 = true;
        }
        (first, count)
    }

    /// The buffer pushed at absolute position `pos` (still in the history:
    /// only `prune` drops positions).
    fn bid_at(&self, pos: u64) -> u16 {
        self.hist.borrow()[(pos - self.hist_base.get()) as usize].0
    }

    /// Drops the accounted-for positions from the front of the history.
    fn prune(&self) {
        let mut hist = self.hist.borrow_mut();
        while let Some(&(_, true)) = hist.front() {
            hist.pop_front();
            self.hist_base.set(self.hist_base.get() + 1);
        }
    }

    /// Makes the entries pushed so far visible to the kernel.
    fn publish_tail(&self) {
        // SAFETY: the tail is entry 0's `resv` field, a u16 inside the ring
        // allocation, aligned (offset 14 of a page-aligned block); the
        // kernel reads it with acquire ordering, so the release store
        // publishes the entries written before it.
        let tail = unsafe { AtomicU16::from_ptr(ptr::addr_of_mut!((*self.ring.as_ptr()).resv)) };
        tail.store(self.tail.get(), Ordering::Release);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // No operation that may select from the ring is in flight (each
        // keeps a clone), so once the group is unregistered the kernel no
        // longer touches this memory.
        if self.registered {
            let unregistered = match self.core.driver.try_borrow() {
                Ok(d) => !d.is_abandoned() && d.unregister_buf_ring(self.bgid).is_ok(),
                Err(_) => false,
            };
            if !unregistered {
                // The kernel may still use the memory: leak it.
                return;
            }
        }
        // SAFETY: allocated in `build` with these layouts; the kernel is
        // done with them (unregistered, or never registered).
        unsafe {
            dealloc(self.ring.as_ptr().cast(), self.ring_layout);
            dealloc(self.bufs.as_ptr(), self.bufs_layout);
        }
    }
}

/// Registers the ring under `wanted` or the first free receive group id
/// of the runtime's ring.
fn register(inner: &Inner, wanted: Option<u16>) -> io::Result<u16> {
    let addr = inner.ring.as_ptr() as u64;
    // SAFETY: the ring memory is page-aligned, entries * 16 bytes, and is
    // only freed after the group is unregistered (see `Inner::drop`).
    unsafe {
        inner.core.driver.borrow_mut().register_buf_ring(
            addr,
            inner.entries,
            wanted,
            GroupKind::Receive,
        )
    }
}
