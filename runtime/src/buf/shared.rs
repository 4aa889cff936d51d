//! Buffers a user already has: shared immutable bytes
//! (`std::sync::Arc<[u8]>`, `std::rc::Rc<[u8]>`) and, with the `bytes`
//! feature, `bytes::Bytes` and `bytes::BytesMut` (see the `buf` module's
//! docs).

use std::rc::Rc;
use std::sync::Arc;

use super::IoBuf;
#[cfg(feature = "bytes")]
use super::IoBufMut;

// SAFETY: the slice lives in the Arc's heap allocation, which does not move
// when an `Arc` value moves and stays alive while this clone does. The bytes
// are immutable while any clone other than the only one exists
// (`Arc::get_mut` needs the only clone, and the operation holds one), and
// all of them are initialised: `len` bytes, capacity `len`. Reading the
// pointer touches no reference count.
unsafe impl IoBuf for Arc<[u8]> {
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

// SAFETY: as for `Arc<[u8]>`: the Rc's heap allocation does not move with
// the value and lives while this clone does; the bytes are immutable while
// another clone exists (`Rc::get_mut` needs the only one) and initialised.
// `stable_ptr` only reads the Rc's pointer, never its (non-atomic)
// reference count.
unsafe impl IoBuf for Rc<[u8]> {
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

// SAFETY: a `Bytes` points into a heap allocation (shared or a Vec's) or
// into 'static memory, never into the value itself (the crate has no inline
// storage), so its pointer does not change when the value moves; the view
// stays alive while this handle does. `Bytes` is immutable: no handle can
// write through it (`try_into_mut` needs the only handle, and the operation
// holds one). Its `len` bytes are initialised.
#[cfg(feature = "bytes")]
unsafe impl IoBuf for bytes::Bytes {
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

// SAFETY: a `BytesMut` owns a heap buffer (its own Vec or a shared one it
// has unique access to) of `capacity()` bytes from its pointer; the buffer
// does not move when the value moves, and only grows or moves through
// `&mut self` methods, which nobody can call while the operation owns the
// value. `len` bytes are initialised.
#[cfg(feature = "bytes")]
unsafe impl IoBuf for bytes::BytesMut {
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

// SAFETY: as for IoBuf; the `capacity()` bytes from the pointer are the
// BytesMut's own, writable through `&mut self`. A read fills the spare
// capacity and `set_init` extends `len`, as for `Vec<u8>`.
#[cfg(feature = "bytes")]
unsafe impl IoBufMut for bytes::BytesMut {
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

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(feature = "bytes")]
    use crate::buf::IoBufMut;

    #[test]
    fn arc_and_rc_are_their_bytes() {
        let arc: Arc<[u8]> = Arc::from(&b"shared"[..]);
        let clone = arc.clone();
        assert_eq!(
            clone.stable_ptr(),
            arc.as_ptr(),
            "a clone is the same memory"
        );
        assert_eq!((arc.bytes_init(), arc.bytes_total()), (6, 6));
        let moved = Box::new(clone);
        assert_eq!(moved.stable_ptr(), arc.as_ptr(), "moving keeps the pointer");
        let s = arc.clone().slice(2..4);
        assert_eq!(s.bytes_init(), 2);

        let rc: Rc<[u8]> = Rc::from(&b"local"[..]);
        assert_eq!(rc.clone().stable_ptr(), rc.as_ptr());
        assert_eq!((rc.bytes_init(), rc.bytes_total()), (5, 5));
        let empty: Rc<[u8]> = Rc::from(Vec::new());
        assert_eq!(empty.bytes_total(), 0);
    }

    #[cfg(feature = "bytes")]
    #[test]
    fn bytes_is_its_bytes() {
        let b = bytes::Bytes::from(b"frozen".to_vec());
        let ptr = b.as_ptr();
        let c = b.clone();
        assert_eq!(c.stable_ptr(), ptr);
        assert_eq!((c.bytes_init(), c.bytes_total()), (6, 6));
        let s = bytes::Bytes::from_static(b"static");
        assert_eq!(s.stable_ptr(), b"static".as_ptr().cast());
        let tail = b.slice(3..);
        assert_eq!(
            (tail.stable_ptr(), tail.bytes_init()),
            (ptr.wrapping_add(3), 3)
        );
    }

    #[cfg(feature = "bytes")]
    #[test]
    fn bytes_mut_reads_into_its_spare_capacity() {
        let mut b = bytes::BytesMut::with_capacity(16);
        b.extend_from_slice(b"abc");
        let cap = b.capacity();
        assert_eq!(
            (b.bytes_init(), b.bytes_total(), b.read_start()),
            (3, cap, 3)
        );
        assert_eq!(b.bytes_room(), cap - 3);
        let ptr = b.stable_ptr();
        // SAFETY: pretend a read filled 2 bytes of the spare capacity.
        unsafe {
            b.stable_mut_ptr().add(3).write(b'd');
            b.stable_mut_ptr().add(4).write(b'e');
            b.set_init(5);
        }
        assert_eq!(&b[..], b"abcde");
        // SAFETY: shrinking is a no-op.
        unsafe { b.set_init(1) };
        assert_eq!(b.len(), 5);
        let moved = Box::new(b);
        assert_eq!(moved.stable_ptr(), ptr);
        assert_eq!(bytes::BytesMut::new().bytes_room(), 0);
    }
}
