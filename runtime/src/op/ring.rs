//! Operations on provided-buffer rings (io_uring only): receives into a
//! buffer the kernel picks from a [`BufRing`] (single shot, multishot,
//! bundles) and bundled sends from a [`SendRing`].
//!
//! The SQEs point at no memory of ours: the kernel takes buffers (or send
//! entries) from the ring's group, and the struct keeps a clone of the ring
//! so that the ring, its registration and its buffers outlive the
//! operation. Turning CQEs into chunks is the ring's job
//! ([`BufRing::chunk`]).

use io_uring::{opcode, squeue};

use crate::bufring::BufRing;
use crate::op::fd::SharedFd;
use crate::op::operation::MultishotOperation;
use crate::op::submit::Entry;
use crate::sendring::SendRing;

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

/// `IORING_OP_SEND` with `IORING_RECVSEND_BUNDLE` (Linux 6.10) and
/// `MSG_NOSIGNAL`: one send of the entries queued in a [`SendRing`], in
/// order. Its CQEs report the bytes sent; the ring settles them.
#[derive(Debug)]
pub struct SendBundle {
    fd: SharedFd,
    /// Keeps the ring, its registration and the queued buffers alive.
    _ring: SendRing,
    group: u16,
}

impl SendBundle {
    /// A bundled send on `fd` of what `ring` holds; `None` when the ring
    /// has no registered group (the kernel lacks send bundles).
    pub fn new(fd: &SharedFd, ring: &SendRing) -> Option<SendBundle> {
        Some(SendBundle {
            fd: fd.clone(),
            _ring: ring.clone(),
            group: ring.group_id()?,
        })
    }
}

// SAFETY: the SQE names no memory of ours: the kernel reads the ring's
// entries and the buffers they point at, which the SendRing clone keeps
// alive and registered while CQEs may come (entries are only rewritten when
// no send is in flight: SendRing's contract). The SharedFd clone keeps the
// socket open.
unsafe impl MultishotOperation for SendBundle {
    fn sqe(&mut self) -> Entry {
        let group = self.group;
        crate::with_target!(self.fd, |t| opcode::SendBundle::new(t, group)
            .flags(libc::MSG_NOSIGNAL)
            .build())
    }
}
