//! Waiting operations: `IORING_OP_TIMEOUT`, `IORING_OP_POLL_ADD` and
//! `IORING_OP_NOP`.

use std::io;
use std::time::Duration;

use io_uring::{opcode, types::Timespec};

use crate::driver::lifecycle::Completion;
use crate::op::fd::SharedFd;
use crate::op::operation::{MultishotOperation, Operation, Readiness};
use crate::op::submit::Entry;

/// `IORING_OP_TIMEOUT`: completes after a relative time, measured by the
/// kernel. (The runtime's own timers, [`crate::time`], are a map in user
/// space and cost no SQE; this is for chains and third parties.)
/// io_uring only: `ErrorKind::Unsupported` on the epoll driver.
#[derive(Debug)]
pub struct Timeout {
    ts: Box<Timespec>,
}

impl Timeout {
    /// A timeout of `duration`.
    pub fn new(duration: Duration) -> Timeout {
        Timeout {
            ts: Box::new(Timespec::from(duration)),
        }
    }
}

// SAFETY: the SQE points at the boxed timespec, owned by the struct.
unsafe impl Operation for Timeout {
    /// `Ok(())` when the time has passed (the kernel's `ETIME`); the
    /// kernel's error otherwise (`ECANCELED` if cancelled).
    type Output = io::Result<()>;

    fn sqe(&mut self) -> Entry {
        opcode::Timeout::new(&*self.ts).build()
    }

    fn complete(self, completion: Completion) -> Self::Output {
        match completion.raw_result() {
            r if r == -libc::ETIME => Ok(()),
            _ => completion.result().map(drop),
        }
    }
}

/// `IORING_OP_POLL_ADD` (single shot): completes once the descriptor has
/// one of the events asked for (`POLLIN`, `POLLOUT`, `POLLRDHUP`, ...);
/// the output is the events it has.
#[derive(Debug)]
pub struct PollAdd {
    fd: SharedFd,
    events: u32,
}

impl PollAdd {
    /// A poll of `fd` for `events` (`libc::POLL*` bits).
    pub fn new(fd: &SharedFd, events: u32) -> PollAdd {
        PollAdd {
            fd: fd.clone(),
            events,
        }
    }
}

// SAFETY: the SQE points at no memory; the SharedFd clone keeps the
// descriptor open.
unsafe impl Operation for PollAdd {
    /// The events the descriptor has (`revents`).
    type Output = io::Result<u32>;

    fn sqe(&mut self) -> Entry {
        let events = self.events;
        crate::with_target!(self.fd, |t| opcode::PollAdd::new(t, events).build())
    }

    fn complete(self, completion: Completion) -> Self::Output {
        completion.result()
    }

    fn readiness(&self) -> Readiness {
        if self.events & libc::POLLOUT as u32 != 0 {
            Readiness::Writable(self.fd.raw())
        } else {
            Readiness::Readable(self.fd.raw())
        }
    }

    /// A `poll(2)` that does not wait: the events the descriptor has now,
    /// or `EAGAIN` if none of those asked for.
    fn perform(&mut self) -> io::Result<u32> {
        let mut pfd = libc::pollfd {
            fd: self.fd.raw(),
            events: self.events as i16,
            revents: 0,
        };
        // SAFETY: one pollfd on the stack, no waiting.
        let ret = unsafe { libc::poll(&mut pfd, 1, 0) };
        match ret {
            r if r < 0 => Err(io::Error::last_os_error()),
            0 => Err(io::Error::from_raw_os_error(libc::EAGAIN)),
            _ => Ok(pfd.revents as u16 as u32),
        }
    }
}

/// `IORING_OP_POLL_ADD` with `IORING_POLL_ADD_MULTI` (5.13+): armed once,
/// it posts a completion (the events the descriptor has) each time the
/// descriptor's wait queue is woken with one of the events asked for, for
/// as long as it runs: a readiness subscription, as `epoll` keeps one.
///
/// The kernel may end it at any time (the last completion has no
/// `IORING_CQE_F_MORE`, and the stream of [`Multishot`](crate::op::Multishot)
/// ends): start a new one then. On a kernel without multishot polls the
/// only completion is `EINVAL`; on the epoll driver it is `EOPNOTSUPP`
/// (`ErrorKind::Unsupported`): use single-shot [`PollAdd`]s there.
#[derive(Debug)]
pub struct PollMulti {
    fd: SharedFd,
    events: u32,
}

impl PollMulti {
    /// A multishot poll of `fd` for `events` (`libc::POLL*` bits).
    pub fn new(fd: &SharedFd, events: u32) -> PollMulti {
        PollMulti {
            fd: fd.clone(),
            events,
        }
    }
}

// SAFETY: the SQE points at no memory; the SharedFd clone keeps the
// descriptor open while CQEs may come.
unsafe impl MultishotOperation for PollMulti {
    fn sqe(&mut self) -> Entry {
        let events = self.events;
        crate::with_target!(self.fd, |t| opcode::PollAdd::new(t, events)
            .multi(true)
            .build())
    }
}

/// `IORING_OP_NOP`: does nothing, and completes with 0.
#[derive(Debug, Default)]
pub struct Nop;

// SAFETY: a NOP points at no memory and names no descriptor.
unsafe impl Operation for Nop {
    type Output = io::Result<()>;

    fn sqe(&mut self) -> Entry {
        opcode::Nop::new().build()
    }

    fn complete(self, completion: Completion) -> Self::Output {
        completion.result().map(drop)
    }

    fn readiness(&self) -> Readiness {
        Readiness::Now
    }

    fn perform(&mut self) -> io::Result<u32> {
        Ok(0)
    }
}
