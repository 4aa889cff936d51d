//! Buffers that can be lent to the kernel.
//!
//! An operation takes its buffer by value and gives it back when the kernel
//! is done with it, so the buffer must stay at one address however the value
//! holding it moves. [`IoBuf`] describes memory the kernel may read,
//! [`IoBufMut`] memory it may write.
//!
//! A write sends the initialised bytes (`buf[..bytes_init()]`). A read fills
//! the region `[read_start() .. bytes_total()]` and then marks the bytes it
//! filled as initialised: for a `Vec<u8>` that is the spare capacity, so a
//! read appends to the vector and extends its length; for a `Box<[u8]>` it is
//! the whole box.
//!
//! A read into a buffer with no room (an empty or full `Vec`, an empty box:
//! [`IoBufMut::bytes_room`] is 0) returns `Ok(0)` at once, on every kind of
//! stream and file, without submitting anything, as std's `read` does
//! (datagram sockets are the exception: see `net::UdpSocket`).
//!
//! # Buffers a user already has
//!
//! `Arc<[u8]>` and `Rc<[u8]>` are [`IoBuf`]s: written without a copy, one
//! clone (a reference count) per operation, so the same bytes can go to
//! many sockets at once. With the `bytes` feature (off by default),
//! `bytes::Bytes` is an [`IoBuf`] and `bytes::BytesMut` an [`IoBufMut`],
//! read like a `Vec` (into its spare capacity, extending its length).
//!
//! ```
//! use std::sync::Arc;
//! use runtime::op::{Operation, Recv, Send, SharedFd};
//!
//! # runtime::block_on(async {
//! let page: Arc<[u8]> = Arc::from(&b"HTTP/1.1 200 OK\r\n\r\n"[..]);
//! let (a, b) = std::os::unix::net::UnixStream::pair()?;
//! let (a, b) = (SharedFd::new(a.into()), SharedFd::new(b.into()));
//! let (sent, _) = Send::new(&a, page.clone()).submit().await; // a clone, not a copy
//! let (got, buf) = Recv::new(&b, Vec::with_capacity(64)).submit().await;
//! assert_eq!((sent?, got?), (page.len(), page.len()));
//! assert_eq!(&buf[..], &page[..]);
//! # Ok::<(), std::io::Error>(())
//! # }).unwrap();
//! ```

use std::ops::{Bound, RangeBounds};

mod aligned;
mod shared;

pub use aligned::AlignedBuf;

/// Memory the kernel may read from while an operation is in flight.
///
/// The buffer is **owned** (`'static`): the kernel may still read it after
/// the future that lent it was dropped, so a borrowed slice cannot be lent.
/// Passing `&buf[..]` to `write_all` therefore fails to compile with
/// "borrowed value does not live long enough ... requires that `buf` is
/// borrowed for `'static`". The fix is to pass an owned buffer: the `Vec`
/// itself (it comes back with the result), `buf.to_vec()`, a
/// `Box<[u8]>`, an `Arc<[u8]>` shared by many writes, `bytes::Bytes`
/// (feature `bytes`), a `&'static` literal; or, for code written against
/// borrowed buffers, the poll-style `AsyncWriteExt::write_all` of `net`'s
/// `tokio-io` feature.
///
/// # Safety
///
/// Implementors promise that [`stable_ptr`](IoBuf::stable_ptr) stays valid and
/// points at the same memory when the value is moved, until the value is
/// dropped or mutated through its own API; that `bytes_init()` bytes from it
/// are initialised and readable; and that `bytes_init() <= bytes_total()`.
pub unsafe trait IoBuf: 'static {
    /// A pointer to the first byte; it does not change when `self` moves.
    fn stable_ptr(&self) -> *const u8;

    /// The number of initialised bytes (what a write sends).
    fn bytes_init(&self) -> usize;

    /// The number of bytes the buffer can hold (its capacity).
    fn bytes_total(&self) -> usize;

    /// A view of part of this buffer, by byte range of its capacity.
    ///
    /// # Panics
    ///
    /// If the range is decreasing or ends past
    /// [`bytes_total`](IoBuf::bytes_total), like slicing a slice out of
    /// bounds.
    fn slice(self, range: impl RangeBounds<usize>) -> Slice<Self>
    where
        Self: Sized,
    {
        let total = self.bytes_total();
        let begin = match range.start_bound() {
            Bound::Included(&n) => n,
            Bound::Excluded(&n) => n.checked_add(1).expect("slice start overflows usize"),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&n) => n.checked_add(1).expect("slice end overflows usize"),
            Bound::Excluded(&n) => n,
            Bound::Unbounded => total,
        };
        assert!(
            begin <= end,
            "buffer slice starts at {begin} but ends at {end}"
        );
        assert!(
            end <= total,
            "buffer slice ends at {end} but the buffer holds only {total} bytes"
        );
        Slice {
            buf: self,
            begin,
            end,
        }
    }
}

/// Memory the kernel may write into while an operation is in flight.
///
/// # Safety
///
/// In addition to the [`IoBuf`] promises: `stable_mut_ptr` returns the same
/// address as `stable_ptr`, and the `bytes_total()` bytes from it are
/// writable for as long as the value lives.
pub unsafe trait IoBufMut: IoBuf {
    /// A writable pointer to the first byte; it does not change when `self`
    /// moves.
    fn stable_mut_ptr(&mut self) -> *mut u8;

    /// Where a read starts filling: the initialised length for growable
    /// buffers (a read appends), `0` for fixed-size ones (a read overwrites).
    fn read_start(&self) -> usize {
        self.bytes_init()
    }

    /// The room a read can fill: `bytes_total() - read_start()` (a `Vec`'s
    /// spare capacity). Every read of this runtime into a buffer with no
    /// room returns `Ok(0)` at once, without asking the kernel, as std's
    /// `read` does.
    fn bytes_room(&self) -> usize {
        self.bytes_total().saturating_sub(self.read_start())
    }

    /// Marks the bytes `[0, pos)` as initialised. A buffer never shrinks
    /// through this call: a `pos` below the current initialised length
    /// changes nothing.
    ///
    /// # Safety
    ///
    /// The caller promises that the bytes `[0, pos)` are initialised and that
    /// `pos <= bytes_total()`.
    unsafe fn set_init(&mut self, pos: usize);
}

// SAFETY: a Vec's heap buffer does not move when the Vec value moves; `len`
// bytes are initialised and `capacity` bytes are allocated.
unsafe impl IoBuf for Vec<u8> {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.capacity()
    }
}

// SAFETY: as for IoBuf; the whole capacity is writable.
unsafe impl IoBufMut for Vec<u8> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, pos: usize) {
        if pos > self.len() {
            // SAFETY: the caller promises `[0, pos)` is initialised and
            // `pos <= capacity`.
            unsafe { self.set_len(pos) };
        }
    }
}

// SAFETY: a boxed slice's allocation does not move with the box and is fully
// initialised.
unsafe impl IoBuf for Box<[u8]> {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

// SAFETY: every byte of the box is writable; it is always fully initialised.
unsafe impl IoBufMut for Box<[u8]> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    fn read_start(&self) -> usize {
        0
    }
    unsafe fn set_init(&mut self, _pos: usize) {}
}

// SAFETY: 'static data never moves or goes away.
unsafe impl IoBuf for &'static [u8] {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

// SAFETY: 'static data never moves or goes away.
unsafe impl IoBuf for &'static str {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

// SAFETY: a String's heap buffer does not move with the String; `len` bytes
// are initialised.
unsafe impl IoBuf for String {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.capacity()
    }
}

/// A view of the byte range `begin..end` of a buffer, made by
/// [`IoBuf::slice`]. It is itself a buffer: writing a slice sends its
/// initialised part, reading into it fills it from where its initialised part
/// ends.
#[derive(Debug)]
pub struct Slice<B> {
    buf: B,
    begin: usize,
    end: usize,
}

impl<B> Slice<B> {
    /// The offset in the underlying buffer where this view begins.
    pub fn begin(&self) -> usize {
        self.begin
    }

    /// The offset in the underlying buffer where this view ends.
    pub fn end(&self) -> usize {
        self.end
    }

    /// The underlying buffer.
    pub fn get_ref(&self) -> &B {
        &self.buf
    }

    /// Gives the underlying buffer back.
    pub fn into_inner(self) -> B {
        self.buf
    }
}

// SAFETY: the view is a sub-range of a buffer that keeps the IoBuf promises;
// `begin <= end <= bytes_total()` was checked when the view was made and
// `bytes_init` is clamped into the view.
unsafe impl<B: IoBuf> IoBuf for Slice<B> {
    fn stable_ptr(&self) -> *const u8 {
        // SAFETY: begin <= bytes_total, so the result is within (or one past)
        // the buffer's allocation.
        unsafe { self.buf.stable_ptr().add(self.begin) }
    }
    fn bytes_init(&self) -> usize {
        self.buf.bytes_init().clamp(self.begin, self.end) - self.begin
    }
    fn bytes_total(&self) -> usize {
        self.end - self.begin
    }
}

// SAFETY: as for IoBuf; writes stay within `begin..end` of a writable buffer.
unsafe impl<B: IoBufMut> IoBufMut for Slice<B> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        // SAFETY: as in stable_ptr.
        unsafe { self.buf.stable_mut_ptr().add(self.begin) }
    }
    fn read_start(&self) -> usize {
        self.buf.read_start().clamp(self.begin, self.end) - self.begin
    }
    unsafe fn set_init(&mut self, pos: usize) {
        // Only extend the buffer's initialised prefix when it is contiguous
        // with the bytes just filled: if the view starts past the buffer's
        // initialised length, the gap before it is not initialised and must
        // not be marked so.
        if self.begin <= self.buf.bytes_init() {
            // SAFETY: `[0, begin)` is initialised (begin <= bytes_init) and
            // the caller promises `[begin, begin + pos)` is; `begin + pos <=
            // end <= bytes_total` by the caller's promise on the view.
            unsafe { self.buf.set_init(self.begin + pos) };
        }
    }
}

/// The iovecs of the writable regions of `bufs` (`[read_start() ..
/// bytes_total()]` of each), in order, for a vectored read. The pointers
/// stay valid while the buffers live, wherever the buffers and the vector
/// move.
pub(crate) fn read_iovecs<B: IoBufMut>(bufs: &mut [B]) -> Vec<libc::iovec> {
    bufs.iter_mut()
        .map(|b| {
            let start = b.read_start();
            libc::iovec {
                // SAFETY: start <= bytes_total, inside the allocation.
                iov_base: unsafe { b.stable_mut_ptr().add(start) }.cast(),
                iov_len: b.bytes_total() - start,
            }
        })
        .collect()
}

/// The iovecs of the initialised bytes of `bufs`, in order, for a vectored
/// write (the kernel only reads through them).
pub(crate) fn write_iovecs<B: IoBuf>(bufs: &[B]) -> Vec<libc::iovec> {
    bufs.iter()
        .map(|b| libc::iovec {
            iov_base: b.stable_ptr() as *mut libc::c_void,
            iov_len: b.bytes_init(),
        })
        .collect()
}

/// After a vectored read through [`read_iovecs`] returned `n`, marks the
/// bytes it filled as initialised: the buffers in order, each up to its
/// room.
///
/// # Safety
///
/// The kernel filled `n` bytes through the iovecs that `read_iovecs` made
/// from these same buffers, with no buffer changed in between.
pub(crate) unsafe fn mark_read<B: IoBufMut>(bufs: &mut [B], n: usize) {
    let mut left = n;
    for b in bufs.iter_mut() {
        if left == 0 {
            break;
        }
        let start = b.read_start();
        let filled = left.min(b.bytes_total() - start);
        // SAFETY: the caller promises the kernel filled the iovecs in order,
        // so this buffer's first `filled` writable bytes are initialised.
        unsafe { b.set_init(start + filled) };
        left -= filled;
    }
}

/// The memory page size (4096 if the system does not say).
pub(crate) fn page_size() -> usize {
    // SAFETY: plain libc call.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vec_regions() {
        let mut v = Vec::with_capacity(16);
        v.extend_from_slice(b"abc");
        assert_eq!(v.bytes_init(), 3);
        assert_eq!(v.bytes_total(), v.capacity());
        assert_eq!(v.read_start(), 3);
        // SAFETY: pretend a read filled 2 more bytes.
        unsafe {
            v.stable_mut_ptr().add(3).write(b'd');
            v.stable_mut_ptr().add(4).write(b'e');
            v.set_init(5);
        }
        assert_eq!(&v[..], b"abcde");
        // SAFETY: shrinking is a no-op.
        unsafe { v.set_init(1) };
        assert_eq!(v.len(), 5);
    }

    #[test]
    fn box_reads_overwrite() {
        let b: Box<[u8]> = vec![1u8; 8].into_boxed_slice();
        assert_eq!(b.read_start(), 0);
        assert_eq!(b.bytes_init(), 8);
        assert_eq!(b.bytes_total(), 8);
    }

    #[test]
    fn slice_views() {
        let mut v = Vec::with_capacity(10);
        v.extend_from_slice(b"0123456");
        let cap = v.capacity();
        let s = v.slice(2..5);
        assert_eq!(s.bytes_init(), 3);
        assert_eq!(s.bytes_total(), 3);
        // SAFETY: offset 2 is inside the Vec's allocation.
        assert_eq!(s.stable_ptr(), unsafe { s.get_ref().as_ptr().add(2) });
        let v = s.into_inner();
        let s = v.slice(5..);
        assert_eq!(s.bytes_init(), 2);
        assert_eq!(s.bytes_total(), cap - 5);
        let v = s.into_inner();
        // A view over the spare capacity has nothing initialised.
        let s = v.slice(7..);
        assert_eq!(s.bytes_init(), 0);
        assert_eq!(s.read_start(), 0);
        // A view that leaves a gap after the initialised part never marks the
        // gap as initialised.
        let mut v = s.into_inner();
        v.truncate(7);
        let mut s = v.slice(9..);
        // SAFETY: write one byte into the view, then mark it.
        unsafe {
            s.stable_mut_ptr().write(b'x');
            s.set_init(1);
        }
        assert_eq!(s.get_ref().len(), 7);
        let s: Slice<&'static str> = "hello".slice(..=1);
        assert_eq!(s.bytes_init(), 2);
    }

    #[test]
    #[should_panic(expected = "ends at 9")]
    fn slice_out_of_bounds_panics() {
        let _ = "hello".slice(2..9);
    }
}
