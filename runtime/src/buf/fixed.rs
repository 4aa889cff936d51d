//! Registered (fixed) buffers: a pool of equal-sized buffers whose pages
//! the kernel pins once, so that `IORING_OP_READ_FIXED`,
//! `IORING_OP_WRITE_FIXED` and `IORING_OP_SEND_ZC` with
//! `IORING_RECVSEND_FIXED_BUF` skip pinning and unpinning the user pages on
//! every operation.
//!
//! A [`FixedBufPool`] allocates `count` buffers of `size` bytes (zeroed) and
//! registers each one in a slot of the runtime's buffer table. A
//! [`FixedBuf`] taken from the pool ([`FixedBufPool::try_get`],
//! [`FixedBufPool::get`]) is an ordinary owned buffer ([`IoBuf`] and
//! [`IoBufMut`], `Deref<Target = [u8]>` over its initialised bytes) that
//! also knows its slot ([`FixedBuf::buf_index`]); dropping it gives it back
//! to the pool. The `fs` and `net` crates use it with `File::read_fixed_at` /
//! `write_fixed_at` on files (through [`op::Read::fixed`](crate::op::Read::fixed) and [`op::Write::fixed`](crate::op::Write::fixed)) and `read_fixed` / `write_fixed` /
//! `send_zc_fixed` on stream sockets.
//!
//! ```
//! use runtime::fixed::FixedBufPool;
//!
//! # runtime::block_on(async {
//! let pool = FixedBufPool::new(4, 4096)?;
//! let mut buf = pool.try_get().expect("a free buffer");
//! buf.extend_from_slice(b"hello");
//! assert_eq!(&buf[..], b"hello");
//! assert_eq!(buf.capacity(), 4096);
//! assert_eq!(pool.available(), 3);
//! drop(buf); // back to the pool
//! assert_eq!(pool.available(), 4);
//! # Ok::<(), std::io::Error>(())
//! # }).unwrap();
//! ```
//!
//! # The buffer table
//!
//! Each runtime has one sparse table of [`TABLE_SLOTS`] buffer slots,
//! registered (`IORING_REGISTER_BUFFERS2` with
//! `IORING_RSRC_REGISTER_SPARSE`) when its first pool is made. Each pool
//! takes a contiguous range of slots and fills it
//! (`IORING_REGISTER_BUFFERS_UPDATE`); several pools live side by side.
//!
//! # When registration is impossible
//!
//! The pool degrades instead of failing: if the kernel refuses the table
//! or the buffers (an old kernel, `RLIMIT_MEMLOCK` for a user without
//! `CAP_IPC_LOCK`: registered buffers are charged to it, a buffer larger
//! than the kernel's 1 GiB limit, or no contiguous range of free slots left
//! in the table), the pool still works with its plain memory:
//! [`FixedBufPool::is_registered`] is `false`, [`FixedBuf::buf_index`] is
//! `None`, and the fixed operations of `fs` and `net` use the plain
//! opcodes (`READ`, `WRITE`, `SEND_ZC` without a buffer index) instead,
//! with the same results.
//!
//! # Memory safety
//!
//! The kernel may write into registered pages at any time an operation
//! naming them is in flight, and holds them pinned while they are
//! registered. The pool's memory is therefore freed only when the last
//! [`FixedBufPool`] clone and the last [`FixedBuf`] are gone, which
//! includes every operation using one of its buffers (the operation owns
//! the [`FixedBuf`] until its last CQE, also when its future is dropped),
//! and only after its slots were emptied again in the kernel's table. If
//! emptying them fails, the memory is leaked rather than freed. If the
//! runtime gives up on operations at shutdown, their buffers (and so the
//! pool) leak with them.
//!
//! Whoever builds their own SQEs with a buffer index must do the same:
//! keep the [`FixedBuf`] in the operation's data, and point the SQE only
//! inside it.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::buf::{page_size, IoBuf, IoBufMut, Slice};
use crate::driver::resources::BUFFER_SLOTS;
use crate::scheduler::{current, Core};

/// The number of slots in each runtime's registered buffer table: at most
/// this many buffers, over all pools of a runtime, are registered at once.
/// A pool that does not find a contiguous range of free slots falls back
/// to plain memory (see the [module docs](self)).
pub const TABLE_SLOTS: u32 = BUFFER_SLOTS;

/// A pool of equal-sized buffers registered with the runtime's ring (slots
/// of a sparse table, `IORING_REGISTER_BUFFERS2` then
/// `IORING_REGISTER_BUFFERS_UPDATE`), for `READ_FIXED`, `WRITE_FIXED` and
/// `SEND_ZC` with a fixed buffer. Cheap to clone (the clones share the
/// pool); not `Send`: it belongs to the runtime it was made on. See the
/// [module docs](self).
///
/// ```
/// use runtime::fixed::FixedBufPool;
///
/// # runtime::block_on(async {
/// let pool = FixedBufPool::new(2, 1024)?;
/// assert_eq!((pool.count(), pool.buf_size()), (2, 1024));
/// let a = pool.get().await;
/// let b = pool.get().await;
/// assert!(pool.try_get().is_none()); // both are out
/// if pool.is_registered() {
///     assert!(a.buf_index().is_some());
/// }
/// drop((a, b));
/// assert_eq!(pool.available(), 2);
/// # Ok::<(), std::io::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct FixedBufPool {
    inner: Rc<Inner>,
}

struct Inner {
    /// Keeps the ring (and so its buffer table) alive while slots are
    /// registered.
    core: Rc<Core>,
    /// The first table slot, when the buffers are registered.
    base: Option<u16>,
    /// Why the buffers are not registered, for `Debug`.
    unregistered_reason: Option<String>,
    count: usize,
    buf_size: usize,
    mem: NonNull<u8>,
    layout: Layout,
    /// Indices (within the pool) of the buffers not handed out.
    free: RefCell<Vec<u32>>,
    /// Tasks waiting in `get`.
    waiters: RefCell<Vec<Waker>>,
    /// Buffers handed out and not returned yet (for `Debug`).
    out: Cell<usize>,
    /// Some buffers may still be registered although `base` is `None` (a
    /// failed registration that could not be undone): never free `mem`.
    leak_memory: Cell<bool>,
}

impl FixedBufPool {
    /// Allocates `count` zeroed buffers of `size` bytes each and registers
    /// them with the runtime running on this thread. If the kernel refuses
    /// the registration, the pool works with plain memory instead (see
    /// [`is_registered`](Self::is_registered) and the
    /// [module docs](self)).
    ///
    /// ```
    /// # runtime::block_on(async {
    /// let pool = runtime::fixed::FixedBufPool::new(8, 16 * 1024)?;
    /// assert_eq!(pool.available(), 8);
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `count` or `size` is 0, if `count` is above
    /// `u32::MAX` or a buffer is larger than `u32::MAX` bytes (an SQE's
    /// length), `OutOfMemory` if the memory cannot be allocated, `Other`
    /// if no runtime is running on this thread. On the epoll driver the
    /// pool is never registered (it works as plain memory, as where the
    /// registration is refused).
    pub fn new(count: usize, size: usize) -> io::Result<FixedBufPool> {
        FixedBufPool::build(count, size, true)
    }

    /// Like [`new`](Self::new), but never registers the buffers: the
    /// degraded mode, for tests and comparisons.
    #[doc(hidden)]
    pub fn new_unregistered(count: usize, size: usize) -> io::Result<FixedBufPool> {
        FixedBufPool::build(count, size, false)
    }

    fn build(count: usize, size: usize, try_register: bool) -> io::Result<FixedBufPool> {
        let core = current().ok_or_else(|| {
            io::Error::other(
                "runtime::fixed::FixedBufPool::new must be called from inside a runtime: run \
                 your async code with #[runtime::main], #[runtime::test] or Runtime::block_on",
            )
        })?;
        if count == 0 || size == 0 || count > u32::MAX as usize || size > u32::MAX as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a fixed buffer pool needs 1 to {} buffers of 1 to {} bytes, got {count} of {size}",
                    u32::MAX,
                    u32::MAX
                ),
            ));
        }
        let oom = || {
            io::Error::new(
                io::ErrorKind::OutOfMemory,
                "fixed buffer pool allocation failed",
            )
        };
        let layout = count
            .checked_mul(size)
            .and_then(|n| Layout::from_size_align(n, page_size()).ok())
            .ok_or_else(oom)?;
        // SAFETY: the layout has a non-zero size (count, size >= 1).
        let mem = NonNull::new(unsafe { alloc_zeroed(layout) }).ok_or_else(oom)?;
        let mut inner = Inner {
            core,
            base: None,
            unregistered_reason: Some("not requested".to_owned()),
            count,
            buf_size: size,
            mem,
            layout,
            // Reversed so that `pop` hands out buffer 0 first.
            free: RefCell::new((0..count as u32).rev().collect()),
            waiters: RefCell::new(Vec::new()),
            out: Cell::new(0),
            leak_memory: Cell::new(false),
        };
        if try_register {
            match inner.register() {
                Ok(base) => {
                    inner.base = Some(base);
                    inner.unregistered_reason = None;
                }
                Err(e) => inner.unregistered_reason = Some(e.to_string()),
            }
        }
        Ok(FixedBufPool {
            inner: Rc::new(inner),
        })
    }

    /// A free buffer (empty: length 0), or `None` if all are handed out.
    ///
    /// ```
    /// # runtime::block_on(async {
    /// let pool = runtime::fixed::FixedBufPool::new(1, 64)?;
    /// let buf = pool.try_get().unwrap();
    /// assert!(buf.is_empty());
    /// assert!(pool.try_get().is_none());
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn try_get(&self) -> Option<FixedBuf> {
        let index = self.inner.free.borrow_mut().pop()?;
        self.inner.out.set(self.inner.out.get() + 1);
        Some(FixedBuf {
            pool: self.inner.clone(),
            index,
            len: 0,
        })
    }

    /// A free buffer, waiting until one is given back if all are handed
    /// out. Waiters are not served in any particular order.
    ///
    /// ```
    /// # runtime::block_on(async {
    /// let pool = runtime::fixed::FixedBufPool::new(1, 64)?;
    /// let buf = pool.get().await;
    /// let other = pool.clone();
    /// let waiter = runtime::spawn(async move { other.get().await.capacity() });
    /// runtime::yield_now().await; // the waiter finds the pool empty
    /// drop(buf); // wakes it
    /// assert_eq!(waiter.await.unwrap(), 64);
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn get(&self) -> FixedBuf {
        poll_fn(|cx| self.poll_get(cx)).await
    }

    fn poll_get(&self, cx: &mut Context<'_>) -> Poll<FixedBuf> {
        if let Some(buf) = self.try_get() {
            return Poll::Ready(buf);
        }
        let mut waiters = self.inner.waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// The number of buffers not handed out.
    ///
    /// ```
    /// # runtime::block_on(async {
    /// let pool = runtime::fixed::FixedBufPool::new(3, 64)?;
    /// let _a = pool.try_get();
    /// assert_eq!(pool.available(), 2);
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn available(&self) -> usize {
        self.inner.free.borrow().len()
    }

    /// The number of buffers in the pool.
    ///
    /// ```
    /// # runtime::block_on(async {
    /// assert_eq!(runtime::fixed::FixedBufPool::new(3, 64)?.count(), 3);
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn count(&self) -> usize {
        self.inner.count
    }

    /// The size of each buffer in bytes (each buffer's capacity).
    ///
    /// ```
    /// # runtime::block_on(async {
    /// assert_eq!(runtime::fixed::FixedBufPool::new(3, 64)?.buf_size(), 64);
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn buf_size(&self) -> usize {
        self.inner.buf_size
    }

    /// Whether the buffers are registered with the kernel. `false` when
    /// the pool degraded to plain memory (see the [module docs](self)):
    /// everything still works, with the plain opcodes.
    ///
    /// ```
    /// # runtime::block_on(async {
    /// let pool = runtime::fixed::FixedBufPool::new(1, 64)?;
    /// let buf = pool.try_get().unwrap();
    /// assert_eq!(pool.is_registered(), buf.buf_index().is_some());
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn is_registered(&self) -> bool {
        self.inner.base.is_some()
    }
}

impl fmt::Debug for FixedBufPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FixedBufPool")
            .field("count", &self.inner.count)
            .field("buf_size", &self.inner.buf_size)
            .field("available", &self.available())
            .field("first_slot", &self.inner.base)
            .field("unregistered_reason", &self.inner.unregistered_reason)
            .finish()
    }
}

impl Inner {
    /// Registers every buffer in a fresh range of table slots; returns the
    /// first slot. On failure nothing stays registered.
    fn register(&self) -> io::Result<u16> {
        let count = u32::try_from(self.count)
            .ok()
            .filter(|&c| c <= TABLE_SLOTS)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} buffers do not fit in a table of {TABLE_SLOTS} slots",
                        self.count
                    ),
                )
            })?;
        let base = self.core.driver.borrow_mut().alloc_buffer_slots(count)?;
        let iovecs: Vec<libc::iovec> = (0..self.count)
            .map(|i| libc::iovec {
                iov_base: self.buf_ptr(i as u32).cast(),
                iov_len: self.buf_size,
            })
            .collect();
        // SAFETY: the buffers lie in `mem`, which is only freed after the
        // slots were emptied (Inner::drop) and, since every operation on a
        // buffer owns its FixedBuf (and so a reference on this Inner), only
        // when no operation naming them is in flight.
        let res = unsafe { self.core.driver.borrow().update_buffer_slots(base, &iovecs) };
        let mut driver = self.core.driver.borrow_mut();
        match res {
            Ok(n) if n == count => Ok(base as u16),
            other => {
                let done = *other.as_ref().unwrap_or(&0);
                if done > 0 && driver.clear_buffer_slots(base, done).is_err() {
                    // Some buffers may stay registered: keep their slots
                    // out of the table and never free the memory.
                    self.leak_memory.set(true);
                    return Err(io::Error::other(
                        "registering the buffers failed half-way and could not be undone",
                    ));
                }
                driver.release_buffer_slots(base, count);
                Err(match other {
                    Err(e) => {
                        io::Error::new(e.kind(), format!("registering the buffers failed: {e}"))
                    }
                    Ok(n) => io::Error::other(format!(
                        "the kernel registered only {n} of {count} buffers"
                    )),
                })
            }
        }
    }

    fn buf_ptr(&self, index: u32) -> *mut u8 {
        // SAFETY: index < count, so the offset stays inside the allocation
        // of count * buf_size bytes.
        unsafe { self.mem.as_ptr().add(index as usize * self.buf_size) }
    }

    /// Gives buffer `index` back and wakes the tasks waiting in `get`.
    fn give_back(&self, index: u32) {
        self.free.borrow_mut().push(index);
        self.out.set(self.out.get() - 1);
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for w in waiters {
            w.wake();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // No FixedBuf is left, so no operation naming these buffers is in
        // flight (each owns its FixedBuf until its last CQE). Once the
        // slots are emptied the kernel no longer uses this memory.
        let abandoned = self
            .core
            .driver
            .try_borrow()
            .is_ok_and(|d| d.is_abandoned());
        if abandoned && (self.base.is_some() || self.leak_memory.get()) {
            // Shutdown gave up on some operations: be conservative.
            return;
        }
        if let Some(base) = self.base {
            let freed = match self.core.driver.try_borrow_mut() {
                Ok(mut driver) => driver.free_buffer_slots(base as u32, self.count as u32),
                Err(_) => Err(io::Error::other("the driver is busy")),
            };
            if freed.is_err() {
                // The kernel may still hold the buffers: leak the memory
                // and the slots.
                return;
            }
        }
        if self.leak_memory.get() {
            return;
        }
        // SAFETY: allocated in `build` with this layout; the kernel is done
        // with it (its slots were emptied, or it was never registered).
        unsafe { dealloc(self.mem.as_ptr(), self.layout) };
    }
}

/// One buffer of a [`FixedBufPool`], handed out by
/// [`try_get`](FixedBufPool::try_get) or [`get`](FixedBufPool::get); it
/// goes back to its pool when dropped (waking a task waiting in `get`).
///
/// Like a `Vec<u8>` with a fixed capacity: it has a length (the initialised
/// bytes it derefs to, what a write sends) and a capacity
/// ([`FixedBufPool::buf_size`]); a read appends after the length, up to
/// the capacity. A buffer comes out of the pool empty. Its memory was zeroed
/// when the pool was made, so every byte is always initialised; bytes past
/// the length hold zeros or whatever an earlier user of the buffer put
/// there.
///
/// It is an [`IoBuf`] and [`IoBufMut`], so every ordinary read and write
/// takes it too; the fixed operations (`read_fixed_at`, `write_fixed_at`,
/// `read_fixed`, `write_fixed`, `send_zc_fixed`) also use its registration.
///
/// ```
/// # runtime::block_on(async {
/// let pool = runtime::fixed::FixedBufPool::new(1, 8)?;
/// let mut buf = pool.try_get().unwrap();
/// buf.extend_from_slice(b"abc");
/// buf[0] = b'A';
/// assert_eq!(&buf[..], b"Abc");
/// buf.clear();
/// assert!(buf.is_empty());
/// assert_eq!(buf.capacity(), 8);
/// # Ok::<(), std::io::Error>(())
/// # }).unwrap();
/// ```
pub struct FixedBuf {
    pool: Rc<Inner>,
    /// The buffer's index within its pool.
    index: u32,
    len: usize,
}

impl FixedBuf {
    /// The buffer's slot in the runtime's registered buffer table (the
    /// `buf_index` of an SQE), or `None` if its pool is not registered.
    /// Valid on the runtime the pool was made on only.
    ///
    /// ```
    /// # runtime::block_on(async {
    /// let pool = runtime::fixed::FixedBufPool::new(2, 64)?;
    /// let (a, b) = (pool.try_get().unwrap(), pool.try_get().unwrap());
    /// if let (Some(x), Some(y)) = (a.buf_index(), b.buf_index()) {
    ///     assert_ne!(x, y);
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn buf_index(&self) -> Option<u16> {
        self.pool.base.map(|base| base + self.index as u16)
    }

    /// The number of bytes the buffer holds at most (the pool's
    /// [`buf_size`](FixedBufPool::buf_size)).
    ///
    /// ```
    /// # runtime::block_on(async {
    /// let pool = runtime::fixed::FixedBufPool::new(1, 100)?;
    /// assert_eq!(pool.try_get().unwrap().capacity(), 100);
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn capacity(&self) -> usize {
        self.pool.buf_size
    }

    /// Sets the length to 0 (the bytes stay in memory).
    ///
    /// ```
    /// # runtime::block_on(async {
    /// let pool = runtime::fixed::FixedBufPool::new(1, 8)?;
    /// let mut buf = pool.try_get().unwrap();
    /// buf.extend_from_slice(b"xy");
    /// buf.clear();
    /// assert_eq!(buf.len(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Shortens the buffer to `len` bytes (no effect if it is not longer).
    ///
    /// ```
    /// # runtime::block_on(async {
    /// let pool = runtime::fixed::FixedBufPool::new(1, 8)?;
    /// let mut buf = pool.try_get().unwrap();
    /// buf.extend_from_slice(b"abcd");
    /// buf.truncate(2);
    /// assert_eq!(&buf[..], b"ab");
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Sets the length to `len`, up to the capacity. Safe because every
    /// byte of the buffer is initialised: bytes that were past the length
    /// hold zeros or what an earlier user of the buffer left there.
    ///
    /// ```
    /// # runtime::block_on(async {
    /// let pool = runtime::fixed::FixedBufPool::new(1, 8)?;
    /// let mut buf = pool.try_get().unwrap();
    /// buf.set_len(8);
    /// buf.copy_from_slice(b"01234567");
    /// assert_eq!(&buf[..], b"01234567");
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Panics
    ///
    /// If `len` is larger than the [`capacity`](Self::capacity).
    pub fn set_len(&mut self, len: usize) {
        assert!(
            len <= self.capacity(),
            "FixedBuf::set_len({len}) past the capacity of {}",
            self.capacity()
        );
        self.len = len;
    }

    /// Appends `bytes` after the current length.
    ///
    /// ```
    /// # runtime::block_on(async {
    /// let pool = runtime::fixed::FixedBufPool::new(1, 8)?;
    /// let mut buf = pool.try_get().unwrap();
    /// buf.extend_from_slice(b"ab");
    /// buf.extend_from_slice(b"cd");
    /// assert_eq!(&buf[..], b"abcd");
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Panics
    ///
    /// If the bytes do not fit: the buffer cannot grow past its
    /// [`capacity`](Self::capacity).
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        assert!(
            end <= self.capacity(),
            "FixedBuf::extend_from_slice: {} + {} bytes do not fit in a capacity of {}",
            self.len,
            bytes.len(),
            self.capacity()
        );
        let old = self.len;
        self.len = end;
        self[old..].copy_from_slice(bytes);
    }

    fn ptr(&self) -> *mut u8 {
        self.pool.buf_ptr(self.index)
    }

    /// Whether this buffer's slot may be named in an SQE submitted on the
    /// runtime running on this thread (its pool's runtime).
    fn on_current_runtime(&self) -> bool {
        current().is_some_and(|core| Rc::ptr_eq(&core, &self.pool.core))
    }
}

impl Deref for FixedBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: the buffer lies inside the pool's allocation (index <
        // count), which the Rc keeps alive; all of it is initialised (zeroed
        // at allocation), len <= buf_size, and while this FixedBuf exists
        // no other FixedBuf or operation uses this buffer (an operation
        // owns the FixedBuf it uses).
        unsafe { std::slice::from_raw_parts(self.ptr(), self.len) }
    }
}

impl DerefMut for FixedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes this the only access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr(), self.len) }
    }
}

impl AsRef<[u8]> for FixedBuf {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl AsMut<[u8]> for FixedBuf {
    fn as_mut(&mut self) -> &mut [u8] {
        self
    }
}

impl fmt::Debug for FixedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FixedBuf")
            .field("buf_index", &self.buf_index())
            .field("len", &self.len)
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl Drop for FixedBuf {
    fn drop(&mut self) {
        self.pool.give_back(self.index);
    }
}

// SAFETY: the pointer is into the pool's allocation, which the FixedBuf's
// Rc keeps alive and which never moves when the FixedBuf does; `len <=
// buf_size` bytes from it are initialised (all of them are).
unsafe impl IoBuf for FixedBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.ptr()
    }

    fn bytes_init(&self) -> usize {
        self.len
    }

    fn bytes_total(&self) -> usize {
        self.pool.buf_size
    }
}

// SAFETY: the whole `buf_size` bytes of the buffer are writable and only
// this FixedBuf uses them.
unsafe impl IoBufMut for FixedBuf {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.ptr()
    }

    unsafe fn set_init(&mut self, pos: usize) {
        if pos > self.len {
            self.len = pos;
        }
    }
}

/// A buffer that may lie in a registered buffer slot: a [`FixedBuf`], or
/// a [`Slice`] of one (to write the rest of a buffer after a short write).
/// The fixed operations of `fs` and `net` take any of them.
///
/// ```
/// use runtime::buf::IoBuf;
/// use runtime::fixed::{FixedBufPool, FixedIoBuf};
///
/// # runtime::block_on(async {
/// let pool = FixedBufPool::new(1, 16)?;
/// let mut buf = pool.try_get().unwrap();
/// buf.extend_from_slice(b"0123456789");
/// let rest = buf.slice(4..);
/// assert_eq!(rest.bytes_init(), 6);
/// assert_eq!(rest.fixed_index().is_some(), pool.is_registered());
/// # Ok::<(), std::io::Error>(())
/// # }).unwrap();
/// ```
///
/// # Safety
///
/// When [`fixed_index`](Self::fixed_index) is `Some(i)`, the
/// `bytes_total()` bytes from [`stable_ptr`](IoBuf::stable_ptr) lie inside
/// the buffer registered at slot `i` of the ring of the runtime running on
/// this thread, and stay registered while the value lives.
pub unsafe trait FixedIoBuf: IoBuf {
    /// The registered slot to name in an SQE submitted on the runtime
    /// running on this thread, or `None` if the buffer is not registered
    /// there (its pool degraded, or it belongs to another runtime): then
    /// use the plain opcode.
    fn fixed_index(&self) -> Option<u16>;
}

// SAFETY: the buffer's `buf_size` bytes are exactly the iovec registered
// at its slot, on its pool's runtime, for as long as the pool lives (the
// FixedBuf keeps it alive); the index is only given on that runtime.
unsafe impl FixedIoBuf for FixedBuf {
    fn fixed_index(&self) -> Option<u16> {
        self.buf_index().filter(|_| self.on_current_runtime())
    }
}

// SAFETY: a slice's range lies inside its buffer.
unsafe impl<B: FixedIoBuf> FixedIoBuf for Slice<B> {
    fn fixed_index(&self) -> Option<u16> {
        self.get_ref().fixed_index()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_take_disjoint_slots_and_give_them_back() {
        crate::block_on(async {
            let a = FixedBufPool::new(4, 4096).unwrap();
            let b = FixedBufPool::new(4, 4096).unwrap();
            if !a.is_registered() {
                eprintln!("registration refused: {a:?}");
                return;
            }
            assert!(b.is_registered());
            let (x, y) = (a.try_get().unwrap(), b.try_get().unwrap());
            assert_ne!(x.buf_index(), y.buf_index());
            drop((x, y, a));
            drop(b);
            // Every slot is free again, in one range: a pool of the whole
            // table fits.
            let whole = FixedBufPool::new(TABLE_SLOTS as usize, 1).unwrap();
            assert!(whole.is_registered(), "{whole:?}");
        });
    }

    #[test]
    fn too_many_buffers_degrade() {
        crate::block_on(async {
            let pool = FixedBufPool::new(TABLE_SLOTS as usize + 1, 1).unwrap();
            assert!(!pool.is_registered());
            let buf = pool.try_get().unwrap();
            assert_eq!(buf.buf_index(), None);
            assert_eq!(buf.fixed_index(), None);
        });
    }

    #[test]
    fn bad_sizes_and_no_runtime_are_errors() {
        assert_eq!(
            FixedBufPool::new(1, 1).unwrap_err().kind(),
            io::ErrorKind::Other
        );
        crate::block_on(async {
            let e = FixedBufPool::new(0, 1).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
            let e = FixedBufPool::new(1, 0).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        });
    }

    #[test]
    fn buffers_are_zeroed_and_initialised() {
        crate::block_on(async {
            let pool = FixedBufPool::new(2, 32).unwrap();
            let mut buf = pool.try_get().unwrap();
            buf.set_len(32);
            assert!(buf.iter().all(|&b| b == 0));
            buf.fill(7);
            drop(buf);
            let mut again = pool.try_get().unwrap();
            assert!(again.is_empty());
            again.set_len(4);
            assert_eq!(&again[..], &[7, 7, 7, 7]);
        });
    }

    #[test]
    fn index_is_withheld_on_another_runtime() {
        let first = crate::Runtime::new().unwrap();
        let (pool, buf) = first.block_on(async {
            let pool = FixedBufPool::new(1, 64).unwrap();
            let buf = pool.try_get().unwrap();
            assert_eq!(buf.fixed_index().is_some(), pool.is_registered());
            (pool, buf)
        });
        let second = crate::Runtime::new().unwrap();
        assert_eq!(second.block_on(async { buf.fixed_index() }), None);
        assert_eq!(buf.buf_index().is_some(), pool.is_registered());
        drop(second);
        drop((buf, pool));
        drop(first);
    }
}
