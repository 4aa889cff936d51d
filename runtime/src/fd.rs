//! `SharedFd`: a descriptor that stays open while any operation on it is in
//! the kernel.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::rc::Rc;

use io_uring::{opcode, types};

use crate::context::current;
use crate::op::Op;

/// A file descriptor shared by its owner and by the operations in flight
/// on it.
///
/// Every operation that names the descriptor keeps a clone of the
/// `SharedFd` in its data, and operation data lives until the kernel's
/// last CQE for it (see [`op`](crate::op)). The descriptor is closed when
/// the last clone goes, so its number is never closed, nor reused for
/// another file, while the kernel may still use it. Closing goes through
/// the ring (`IORING_OP_CLOSE`) when a runtime is running on this thread,
/// so it never blocks the ring; otherwise it is a plain `close(2)`.
#[derive(Clone)]
pub struct SharedFd {
    inner: Rc<Inner>,
}

struct Inner {
    fd: RawFd,
}

impl SharedFd {
    /// Takes ownership of a descriptor.
    pub fn new(fd: OwnedFd) -> SharedFd {
        SharedFd {
            inner: Rc::new(Inner {
                fd: fd.into_raw_fd(),
            }),
        }
    }

    /// The descriptor number, for building SQEs. Valid while this handle
    /// (or a clone) lives.
    pub fn raw(&self) -> RawFd {
        self.inner.fd
    }

    /// The descriptor as an io_uring SQE target.
    pub fn target(&self) -> types::Fd {
        types::Fd(self.inner.fd)
    }

    /// Closes the descriptor through the ring and reports the result of
    /// `close(2)` (which matters for files: a deferred write error can show
    /// up there).
    ///
    /// If operations on it are still in flight (futures dropped before
    /// their completion), the descriptor is closed when the last of them
    /// finishes, and this returns `Ok(())` at once.
    pub async fn close(self) -> io::Result<()> {
        let inner = match Rc::try_unwrap(self.inner) {
            Ok(inner) => inner,
            Err(_shared) => return Ok(()),
        };
        let fd = inner.fd;
        std::mem::forget(inner);
        if current().is_none() {
            // SAFETY: we own fd and nobody else uses it any more.
            return if unsafe { libc::close(fd) } == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            };
        }
        // SAFETY: a close SQE refers to no memory.
        let op = unsafe { Op::submit((), |_| opcode::Close::new(types::Fd(fd)).build()) };
        let (completion, ()) = op.await;
        completion.result().map(drop)
    }
}

impl AsRawFd for SharedFd {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.fd
    }
}

impl AsFd for SharedFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the descriptor stays open while any handle lives, and the
        // borrow cannot outlive this handle.
        unsafe { BorrowedFd::borrow_raw(self.inner.fd) }
    }
}

impl fmt::Debug for SharedFd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedFd").field(&self.inner.fd).finish()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(core) = current() {
            if let Ok(mut driver) = core.driver.try_borrow_mut() {
                // SAFETY: a close SQE refers to no memory; this was the last
                // handle, so no operation uses the descriptor any more.
                unsafe { driver.submit_detached(opcode::Close::new(types::Fd(self.fd)).build()) };
                return;
            }
        }
        // No runtime on this thread (or it is busy): close directly.
        // SAFETY: we own the descriptor and this is its last handle.
        unsafe { libc::close(self.fd) };
    }
}
