//! The echo server written directly on the `io-uring` crate, with no
//! runtime: the floor that shows what a runtime's abstractions cost.
//!
//! One ring (`SINGLE_ISSUER | DEFER_TASKRUN` if the kernel has them, plain
//! otherwise); one multishot accept, re-armed whenever the kernel ends it
//! (after a 10 ms pause if it ended for lack of descriptors or memory); per
//! connection a slot in a slab holding its socket and a 16 KiB buffer, with
//! the slot's index as the `user_data` of the connection's one operation in
//! flight. A connection cycles receive -> send (again, for the rest, after a
//! short send) -> receive, and is closed when a receive returns 0 or an
//! operation fails. Each loop iteration hands every queued SQE to the kernel
//! and waits for completions in one `io_uring_enter`.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use super::BUF_SIZE;

/// `user_data` of the multishot accept.
const ACCEPT: u64 = u64::MAX;
/// `user_data` of the pause before re-arming a failed accept.
const ACCEPT_PAUSE: u64 = u64::MAX - 1;

/// One connection's slot. Its buffer stays when the connection closes and
/// is reused by the next connection that takes the slot.
struct Slot {
    /// The socket; `None` while the slot is free.
    fd: Option<OwnedFd>,
    /// The buffer (boxed: it does not move when the slab grows).
    buf: Box<[u8]>,
    /// Bytes received into `buf` that are being sent back.
    len: usize,
    /// How many of them have been sent.
    sent: usize,
}

/// The server's state.
struct Server {
    ring: IoUring,
    listener: std::net::TcpListener,
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// The pause before re-arming the accept; read by the kernel when the
    /// timeout SQE is submitted, so kept here, where it does not move.
    pause: types::Timespec,
}

/// Serves echo on `addr` until killed.
pub(crate) fn run(addr: SocketAddr) -> io::Result<()> {
    let listener = bench::listen(addr)?;
    let entries = 4096;
    let ring = bench::uring::ring(entries, 4 * entries)?;
    let mut server = Server {
        ring,
        listener,
        slots: Vec::new(),
        free: Vec::new(),
        pause: types::Timespec::new().nsec(10_000_000),
    };
    let result = server.arm_accept().and_then(|()| server.serve());
    // The loop ends only on an error, with operations possibly still in
    // flight that point into the slots' buffers: leak them rather than free
    // memory the kernel may still write (the process exits next).
    std::mem::forget(server);
    result
}

impl Server {
    fn serve(&mut self) -> io::Result<()> {
        let mut cqes: Vec<(u64, i32, u32)> = Vec::with_capacity(4096);
        loop {
            bench::uring::wait_completions(&mut self.ring, &mut cqes)?;
            for &(user_data, res, flags) in &cqes {
                match user_data {
                    ACCEPT => self.accepted(res, flags)?,
                    ACCEPT_PAUSE => self.arm_accept()?,
                    slot => self.completed(slot as usize, res)?,
                }
            }
        }
    }

    /// Queues one SQE, submitting what is queued first if the SQ is full.
    fn push(&mut self, sqe: squeue::Entry) -> io::Result<()> {
        // SAFETY: the SQEs queued here point either at nothing, at
        // `self.pause` (which lives, unmoved, as long as the server), or into
        // the boxed buffer of a slot, which is never freed (slots are only
        // reused) and is used by one operation at a time: the next one on a
        // slot is queued only after the previous one's CQE.
        unsafe { bench::uring::push(&mut self.ring, &sqe) }
    }

    fn arm_accept(&mut self) -> io::Result<()> {
        let sqe = opcode::AcceptMulti::new(types::Fd(self.listener.as_raw_fd()))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(ACCEPT);
        self.push(sqe)
    }

    fn accepted(&mut self, res: i32, flags: u32) -> io::Result<()> {
        let more = cqueue::more(flags);
        if res >= 0 {
            // SAFETY: a successful accept returns a new descriptor, ours.
            let fd = unsafe { OwnedFd::from_raw_fd(res) };
            bench::uring::set_nodelay(fd.as_raw_fd());
            let slot = match self.free.pop() {
                Some(i) => i,
                None => {
                    self.slots.push(Slot {
                        fd: None,
                        buf: vec![0u8; BUF_SIZE].into_boxed_slice(),
                        len: 0,
                        sent: 0,
                    });
                    self.slots.len() - 1
                }
            };
            self.slots[slot].fd = Some(fd);
            self.queue_recv(slot)?;
        } else {
            let errno = -res;
            if errno != libc::ECONNABORTED && errno != libc::EINTR {
                eprintln!(
                    "echo_server raw: accept failed: {}",
                    io::Error::from_raw_os_error(errno)
                );
            }
            if !more
                && matches!(
                    errno,
                    libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM
                )
            {
                // Out of resources: pause before trying again, rather than
                // spin on the connection that cannot be accepted yet.
                let sqe = opcode::Timeout::new(&self.pause)
                    .build()
                    .user_data(ACCEPT_PAUSE);
                return self.push(sqe);
            }
        }
        if !more {
            self.arm_accept()?;
        }
        Ok(())
    }

    fn queue_recv(&mut self, slot: usize) -> io::Result<()> {
        let s = &mut self.slots[slot];
        let Some(fd) = &s.fd else { return Ok(()) };
        let sqe = opcode::Recv::new(
            types::Fd(fd.as_raw_fd()),
            s.buf.as_mut_ptr(),
            s.buf.len() as u32,
        )
        .build()
        .user_data(slot as u64);
        s.len = 0;
        s.sent = 0;
        self.push(sqe)
    }

    fn queue_send(&mut self, slot: usize) -> io::Result<()> {
        let s = &mut self.slots[slot];
        let Some(fd) = &s.fd else { return Ok(()) };
        let rest = &s.buf[s.sent..s.len];
        let sqe = opcode::Send::new(types::Fd(fd.as_raw_fd()), rest.as_ptr(), rest.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(slot as u64);
        self.push(sqe)
    }

    /// The one operation of connection `slot` completed with `res`.
    fn completed(&mut self, slot: usize, res: i32) -> io::Result<()> {
        let s = &mut self.slots[slot];
        let sending = s.len > 0;
        if res < 0 {
            if matches!(-res, libc::EINTR | libc::EAGAIN | libc::ENOBUFS) {
                // Try the same operation again.
                return if sending {
                    self.queue_send(slot)
                } else {
                    self.queue_recv(slot)
                };
            }
            self.close(slot);
            return Ok(());
        }
        let n = res as usize;
        if !sending {
            if n == 0 {
                // The peer closed.
                self.close(slot);
                return Ok(());
            }
            s.len = n;
            s.sent = 0;
            return self.queue_send(slot);
        }
        s.sent += n;
        if n == 0 {
            self.close(slot);
            Ok(())
        } else if s.sent < s.len {
            self.queue_send(slot)
        } else {
            self.queue_recv(slot)
        }
    }

    /// Closes connection `slot` (none of its operations is in flight) and
    /// frees the slot, keeping its buffer.
    fn close(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        s.fd = None;
        s.len = 0;
        s.sent = 0;
        self.free.push(slot);
    }
}
