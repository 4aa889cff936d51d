//! [`AlignedBuf`]: heap memory with a chosen alignment, for `O_DIRECT`.

use std::alloc::{self, Layout};
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use crate::buf::{IoBuf, IoBufMut};

/// A fixed-capacity byte buffer whose memory starts at a chosen power-of-two
/// alignment, as `O_DIRECT` I/O needs (typically the device's logical block
/// size, 512 or 4096 bytes).
///
/// It behaves like a `Vec<u8>` that never grows: it has a length (the
/// initialised bytes, which [`Deref`] shows and a write sends) and a
/// capacity (what a read may fill: a read appends after the length, so
/// [`clear`](AlignedBuf::clear) it first to read at the start of the
/// memory).
///
/// ```
/// use runtime::buf::AlignedBuf;
///
/// let mut buf = AlignedBuf::new(8192, 4096);
/// assert_eq!(buf.as_ptr() as usize % 4096, 0);
/// assert!(buf.is_empty());
/// buf.extend_from_slice(b"data");
/// assert_eq!(&buf[..], b"data");
/// buf.clear();
/// assert_eq!(buf.capacity(), 8192);
/// ```
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    layout: Layout,
}

// SAFETY: the buffer owns its allocation exclusively, like a Vec<u8>.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only reads the bytes, like a Vec<u8>.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// An empty buffer with room for `capacity` bytes, starting at a
    /// multiple of `align`.
    ///
    /// # Panics
    ///
    /// If `align` is not a power of two, or `capacity` rounded up to
    /// `align` overflows `isize`.
    pub fn new(capacity: usize, align: usize) -> AlignedBuf {
        let layout = Layout::from_size_align(capacity, align).unwrap_or_else(|_| {
            panic!("AlignedBuf: invalid capacity {capacity} or alignment {align} (must be a power of two)")
        });
        let ptr = if capacity == 0 {
            // A dangling pointer with the right alignment; never
            // dereferenced for more than zero bytes.
            NonNull::new(align as *mut u8).expect("alignment is non-zero")
        } else {
            // SAFETY: the layout has a non-zero size.
            let raw = unsafe { alloc::alloc(layout) };
            NonNull::new(raw).unwrap_or_else(|| alloc::handle_alloc_error(layout))
        };
        AlignedBuf {
            ptr,
            len: 0,
            layout,
        }
    }

    /// A buffer of `len` zero bytes (length = capacity = `len`), starting
    /// at a multiple of `align`.
    ///
    /// # Panics
    ///
    /// As for [`new`](AlignedBuf::new).
    pub fn zeroed(len: usize, align: usize) -> AlignedBuf {
        let mut buf = AlignedBuf::new(len, align);
        // SAFETY: the allocation holds `len` writable bytes; zeroing them
        // initialises them all.
        unsafe {
            buf.ptr.as_ptr().write_bytes(0, len);
            buf.set_len(len);
        }
        buf
    }

    /// The number of initialised bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no byte is initialised.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The number of bytes the buffer can hold.
    pub fn capacity(&self) -> usize {
        self.layout.size()
    }

    /// The alignment of the buffer's first byte.
    pub fn alignment(&self) -> usize {
        self.layout.align()
    }

    /// The remaining room, `capacity - len`.
    pub fn spare(&self) -> usize {
        self.capacity() - self.len
    }

    /// Sets the length to 0 (the memory stays).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Shortens the buffer to `len` bytes; no effect if it is not longer.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Sets the length.
    ///
    /// # Safety
    ///
    /// `len <= capacity()`, and the first `len` bytes are initialised.
    pub unsafe fn set_len(&mut self, len: usize) {
        debug_assert!(len <= self.capacity());
        self.len = len;
    }

    /// Appends `data`.
    ///
    /// # Panics
    ///
    /// If it does not fit in the [`spare`](AlignedBuf::spare) room: the
    /// buffer never reallocates (that would lose the alignment guarantee
    /// for memory the caller may already rely on).
    pub fn extend_from_slice(&mut self, data: &[u8]) {
        assert!(
            data.len() <= self.spare(),
            "AlignedBuf::extend_from_slice: {} bytes do not fit in the {} spare bytes",
            data.len(),
            self.spare()
        );
        // SAFETY: the destination `[len, len + data.len())` is inside the
        // allocation (checked above) and cannot overlap `data`, which is
        // borrowed separately; the copied bytes are then initialised.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.ptr.as_ptr().add(self.len),
                data.len(),
            );
            self.set_len(self.len + data.len());
        }
    }

    /// Fills the spare room with `byte`, making the buffer full.
    pub fn fill_spare(&mut self, byte: u8) {
        let cap = self.capacity();
        // SAFETY: `[len, cap)` is inside the allocation; after writing it all
        // `cap` bytes are initialised.
        unsafe {
            self.ptr
                .as_ptr()
                .add(self.len)
                .write_bytes(byte, cap - self.len);
            self.set_len(cap);
        }
    }

    /// A pointer to the first byte (aligned to [`alignment`](AlignedBuf::alignment)).
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// A mutable pointer to the first byte.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if self.layout.size() != 0 {
            // SAFETY: allocated in `new` with exactly this layout.
            unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) };
        }
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: the first `len` bytes are initialised and inside the
        // allocation (or `len` is 0 and the pointer is aligned, non-null).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Clone for AlignedBuf {
    /// A new allocation with the same capacity, alignment and contents.
    fn clone(&self) -> Self {
        let mut copy = AlignedBuf::new(self.capacity(), self.alignment());
        copy.extend_from_slice(self);
        copy
    }
}

impl fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlignedBuf")
            .field("len", &self.len)
            .field("capacity", &self.capacity())
            .field("alignment", &self.alignment())
            .finish()
    }
}

// SAFETY: the allocation does not move when the AlignedBuf value moves; the
// first `len` bytes are initialised and `len <= capacity`.
unsafe impl IoBuf for AlignedBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len
    }
    fn bytes_total(&self) -> usize {
        self.capacity()
    }
}

// SAFETY: all `capacity` bytes of the allocation are writable, at the same
// address as `stable_ptr`.
unsafe impl IoBufMut for AlignedBuf {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }
    unsafe fn set_init(&mut self, pos: usize) {
        if pos > self.len {
            // SAFETY: the caller promises `[0, pos)` is initialised and
            // `pos <= capacity`.
            unsafe { self.set_len(pos) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_and_regions() {
        for align in [1, 512, 4096, 1 << 16] {
            let mut b = AlignedBuf::new(10_000, align);
            assert_eq!(b.as_ptr() as usize % align, 0);
            assert_eq!((b.len(), b.capacity(), b.alignment()), (0, 10_000, align));
            assert_eq!(
                (b.bytes_init(), b.bytes_total(), b.read_start()),
                (0, 10_000, 0)
            );
            b.extend_from_slice(b"abc");
            assert_eq!(b.read_start(), 3);
            // SAFETY: shrinking is a no-op; growing past initialised bytes is
            // only done after writing them.
            unsafe {
                b.set_init(1);
                b.stable_mut_ptr().add(3).write(b'd');
                b.set_init(4);
            }
            assert_eq!(&b[..], b"abcd");
            let c = b.clone();
            assert_eq!(&c[..], b"abcd");
            assert_eq!(c.as_ptr() as usize % align, 0);
            b.truncate(2);
            assert_eq!(&b[..], b"ab");
            b.fill_spare(7);
            assert_eq!(b.len(), 10_000);
            assert!(b[2..].iter().all(|&x| x == 7));
        }
        let z = AlignedBuf::zeroed(4096, 4096);
        assert!(z.iter().all(|&x| x == 0) && z.len() == 4096);
        let empty = AlignedBuf::new(0, 4096);
        assert_eq!(empty.as_ptr() as usize % 4096, 0);
        assert!(empty.is_empty());
    }

    #[test]
    #[should_panic(expected = "power of two")]
    fn bad_alignment_panics() {
        let _ = AlignedBuf::new(4096, 3000);
    }

    #[test]
    #[should_panic(expected = "do not fit")]
    fn overflow_panics() {
        AlignedBuf::new(2, 8).extend_from_slice(b"abc");
    }
}
