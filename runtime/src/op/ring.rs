//! Operations on provided-buffer rings (io_uring only): receives into a
//! buffer the kernel picks from a [`BufRing`] (single shot, multishot,
//! bundles) and bundled sends from a [`SendRing`].
//!
//! The SQEs point at no memory of ours: the kernel takes buffers (or send
//! entries) from the ring's group, and the struct keeps a clone of the ring
//! so that the ring, its registration and its buffers outlive the
//! operation. Turning CQEs into chunks is the ring's job
//! ([`BufRing::chunk`]).

use std::task::{ready, Context, Poll};

use io_uring::{opcode, squeue};

use crate::bufring::{BufRing, BufRingChunk};
use crate::driver::lifecycle::Completion;
use crate::op::fd::SharedFd;
use crate::op::operation::MultishotOperation;
use crate::op::submit::Entry;
use crate::op::submit::Multishot;
use crate::sendring::{SendGuard, SendRing};

/// How a [`RecvRing`] receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvMode {
    /// One `IORING_OP_RECV` with `IOSQE_BUFFER_SELECT`: one CQE (without
    /// `IORING_CQE_F_MORE`), which ends it.
    Single,
    /// `IORING_OP_RECV` with `IORING_RECV_MULTISHOT` (Linux 6.0): a CQE per
    /// buffer filled, until it ends.
    Multishot,
    /// Multishot with `IORING_RECVSEND_BUNDLE` (Linux 6.10): a CQE may hold
    /// several consecutive buffers.
    Bundle,
}

/// A receive on a socket into buffers of a [`BufRing`], submitted as a
/// [`Multishot`](crate::op::Multishot) whatever its [`RecvMode`] (a
/// single-shot one posts one CQE, which ends the stream; the stream form
/// lets a dropped future cancel it and give its buffer back with
/// [`BufRing::release_multishot`]).
#[derive(Debug)]
pub struct RecvRing {
    fd: SharedFd,
    ring: BufRing,
    mode: RecvMode,
}

impl RecvRing {
    /// A receive on `fd` selecting from `ring`.
    pub fn new(fd: &SharedFd, ring: &BufRing, mode: RecvMode) -> RecvRing {
        RecvRing {
            fd: fd.clone(),
            ring: ring.clone(),
            mode,
        }
    }
}

// SAFETY: the SQE names no memory of ours (the kernel picks buffers of the
// ring's group, which the BufRing clone keeps registered and alive while
// CQEs may come); the SharedFd clone keeps the socket open.
unsafe impl MultishotOperation for RecvRing {
    fn sqe(&mut self) -> Entry {
        let group = self.ring.group_id();
        match self.mode {
            RecvMode::Single => {
                let len = u32::try_from(self.ring.buf_size()).unwrap_or(u32::MAX);
                crate::with_target!(self.fd, |t| opcode::Recv::new(t, std::ptr::null_mut(), len)
                    .buf_group(group)
                    .build()
                    .flags(squeue::Flags::BUFFER_SELECT))
            }
            RecvMode::Multishot => {
                crate::with_target!(self.fd, |t| opcode::RecvMulti::new(t, group).build())
            }
            RecvMode::Bundle => {
                crate::with_target!(self.fd, |t| opcode::RecvMultiBundle::new(t, group).build())
            }
        }
    }
}

impl Multishot<RecvRing> {
    /// The next completion, after handing each buffer it filled (in
    /// order) to `each` as a chunk, which returns its buffer to the ring
    /// when dropped; `Ready(None)` once the receive is over. Take every
    /// completion of the stream this way (a completion taken with
    /// [`poll_next`](Multishot::poll_next) keeps its buffer out of the
    /// ring).
    pub fn poll_chunks(
        &mut self,
        cx: &mut Context<'_>,
        each: impl FnMut(BufRingChunk),
    ) -> Poll<Option<Completion>> {
        let completion = ready!(self.poll_next(cx));
        if let (Some(c), Some(op)) = (&completion, self.get_ref()) {
            // SAFETY: `c` is a CQE of this receive, which selects from
            // `op.ring` (a RecvRing pairs them), and the stream hands each
            // CQE out once, so it reaches `chunks` once.
            unsafe { op.ring.chunks(c, each) };
        }
        Poll::Ready(completion)
    }

    /// Stops the receive and gives the buffer of every CQE it still posts
    /// back to the ring (dropping the stream instead would keep them out of
    /// the ring). The bytes in them are dropped.
    pub fn release(self) {
        if self.is_ended() {
            return;
        }
        let Some(ring) = self.get_ref().map(|op| op.ring.clone()) else {
            return;
        };
        // SAFETY: every CQE of this stream is one of a receive selecting
        // from `ring`; those handed out so far are gone from the stream, so
        // the ring takes only the rest, each once.
        unsafe { ring.release_multishot(self) }
    }
}

/// `IORING_OP_SEND` with `IORING_RECVSEND_BUNDLE` (Linux 6.10) and
/// `MSG_NOSIGNAL`: one send of the entries queued in a [`SendRing`], in
/// order. Its CQEs report the bytes sent; the ring settles them.
#[derive(Debug)]
pub struct SendBundle {
    fd: SharedFd,
    /// Keeps the ring, its registration and the queued buffers alive, and
    /// `SendRing::settle` from changing them, while the operation lives.
    _guard: SendGuard,
    group: u16,
}

impl SendBundle {
    /// A bundled send on `fd` of what `ring` holds; `None` when the ring
    /// has no registered group (the kernel lacks send bundles).
    pub fn new(fd: &SharedFd, ring: &SendRing) -> Option<SendBundle> {
        Some(SendBundle {
            fd: fd.clone(),
            _guard: ring.send_guard(),
            group: ring.group_id()?,
        })
    }
}

// SAFETY: the SQE names no memory of ours: the kernel reads the ring's
// entries and the buffers they point at, which the send guard keeps alive
// and registered while CQEs may come; `SendRing::settle`, the only place
// that drops queued buffers or rewrites entries, refuses to run while the
// guard lives. The SharedFd clone keeps the socket open.
unsafe impl MultishotOperation for SendBundle {
    fn sqe(&mut self) -> Entry {
        let group = self.group;
        crate::with_target!(self.fd, |t| opcode::SendBundle::new(t, group)
            .flags(libc::MSG_NOSIGNAL)
            .build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bundle send keeps the queue it reads from still: the ring refuses
    /// to settle while the operation lives, whether or not it was
    /// submitted, and settles once it is gone.
    #[test]
    fn a_live_bundle_send_blocks_settle() {
        // Send rings are io_uring's: on io_uring whatever RUNTIME_DRIVER says.
        let rt = crate::Builder::new()
            .driver(crate::DriverKind::IoUring)
            .build()
            .unwrap();
        rt.block_on(async {
            let ring = SendRing::new(8).unwrap();
            let Some(_) = ring.group_id() else {
                return; // no buffer rings on this kernel
            };
            ring.push(b"abc".to_vec()).unwrap();
            let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
            let fd = SharedFd::new(a.into());
            let op = SendBundle::new(&fd, &ring).unwrap();
            let err = ring.settle(0).unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::ResourceBusy);
            drop(op);
            ring.settle(3).unwrap();
            assert_eq!(ring.queued(), 0);
        });
    }
}
