//! The `http` example's protocol served directly on the `io-uring` crate,
//! with no runtime: the floor under our HTTP server, and the bench on which
//! the kernel-path levers of issue 16 are tried one at a time (the `levers`
//! scenario of the suite).
//!
//! ```text
//! raw_http [ADDR] [--mode plain|pollfirst|link|linkpf|multishot] [--fixed] [--ring defer|coop]
//! ```
//!
//! Same protocol code as `examples/http` and `tokio_http` (it includes
//! `examples/http/parser.rs` and `examples/http/conn.rs`: one
//! [`Conn::process`] per read, one send per batch of responses). Same shape
//! as the raw echo server: one thread, one ring (`SINGLE_ISSUER |
//! DEFER_TASKRUN` where the kernel has them), one multishot accept, a slab of
//! connection slots whose index (shifted left one bit, the low bit telling a
//! send from a receive) is the `user_data`, and one `io_uring_enter` per loop
//! turn (`submit_and_wait(1)`) that hands the kernel every SQE the turn
//! queued.
//!
//! The modes, each one lever:
//!
//! - `plain`: receive -> process -> send (again, for the rest, after a short
//!   send) -> receive. The receive that follows a response is queued when
//!   the send's CQE is reaped, so it goes to the kernel in the next enter.
//! - `pollfirst`: as `plain`, but the receive queued after a response was
//!   sent carries `IORING_RECVSEND_POLL_FIRST`: the kernel arms the socket's
//!   poll at once instead of first trying a receive that (the client has not
//!   read the response yet) almost always finds nothing.
//! - `link`: the send of a response is linked (`IOSQE_IO_LINK`) to the next
//!   receive, both queued together, so the receive is armed in the same
//!   enter as the send. The send carries `MSG_WAITALL`: the kernel then
//!   sends all of it before completing (retrying after a partial send), and
//!   a send that ends short fails the link, which cancels the receive
//!   (`-ECANCELED`); the rest is then sent unlinked and the receive queued
//!   after it.
//! - `linkpf`: `link` whose linked receive carries `POLL_FIRST`.
//! - `multishot`: one multishot receive per connection over a ring of
//!   provided buffers (1,024 x 4 KiB, buffer group 0), re-armed when the
//!   kernel ends it; each CQE's bytes are copied into the connection's input
//!   and the buffer goes back to the ring at once. Sends as in `plain`;
//!   bytes that arrive while a send is in flight are processed after it.
//!
//! Two options apply to any mode:
//!
//! - `--fixed`: the multishot accept installs each connection in the ring's
//!   table of registered files (4,096 slots, `IORING_FILE_INDEX_ALLOC`) and
//!   never as a descriptor; receives and sends name it with
//!   `IOSQE_FIXED_FILE` (no `fget`/`fput` per operation), shutdowns and
//!   closes are `IORING_OP_SHUTDOWN` / `IORING_OP_CLOSE`. `TCP_NODELAY` is
//!   set on the listener, whose accepted sockets inherit it.
//! - `--ring coop`: the ring is set up `SINGLE_ISSUER | COOP_TASKRUN |
//!   TASKRUN_FLAG` instead of the default `SINGLE_ISSUER | DEFER_TASKRUN`.
//!
//! A connection closes when its peer does (a receive returns 0) or an
//! operation fails: the socket is shut down (which ends whatever receive is
//! armed) and closed once none of its operations is in flight. After an
//! answer that closes the connection (`Connection: close`, a parse error) it
//! sends FIN and discards what the client still sends (at most 64 KiB)
//! until the client closes; unlike `tokio_http` it has no one-second limit
//! on that.

#[path = "../../../examples/http/conn.rs"]
mod conn;
#[path = "../../../examples/http/parser.rs"]
mod parser;

use std::alloc::{self, Layout};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use conn::{Conn, Next};

/// `user_data` of the multishot accept.
const ACCEPT: u64 = u64::MAX;
/// `user_data` of the pause before re-arming a failed accept.
const ACCEPT_PAUSE: u64 = u64::MAX - 1;
/// `user_data` of the shutdowns and closes of registered files: their
/// completions are ignored.
const IGNORE: u64 = u64::MAX - 2;
/// The low bit of a connection operation's `user_data`: a receive.
const RECV: u64 = 0;
/// The low bit of a connection operation's `user_data`: a send.
const SEND: u64 = 1;

/// `IORING_RECVSEND_POLL_FIRST`, in the `ioprio` field of a receive or
/// send SQE (the `io-uring` crate does not export it).
const POLL_FIRST: u16 = 1;

/// Provided buffers of the `multishot` mode: how many (a power of two) and
/// how large.
const PBUF_COUNT: u16 = 1024;
const PBUF_LEN: usize = 4096;
/// The buffer group of the provided buffers.
const BGID: u16 = 0;

/// After a closing answer, at most this many bytes are read and discarded.
const DRAIN_LIMIT: usize = 64 * 1024;

/// Slots of the table of registered files (`--fixed`).
const FIXED_FILES: u32 = 4096;

/// A connection's socket: a descriptor, or a slot of the ring's table of
/// registered files (`--fixed`).
enum Sock {
    Owned(OwnedFd),
    Fixed(u32),
}

/// Evaluates `$e` with `$fd` bound to the `types::Fd` or `types::Fixed`
/// that names socket `$sock` in an SQE.
macro_rules! with_fd {
    ($sock:expr, |$fd:ident| $e:expr) => {
        match $sock {
            Sock::Owned(o) => {
                let $fd = types::Fd(o.as_raw_fd());
                $e
            }
            Sock::Fixed(i) => {
                let $fd = types::Fixed(*i);
                $e
            }
        }
    };
}

/// The lever under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    PollFirst,
    Link,
    LinkPollFirst,
    Multishot,
}

impl Mode {
    fn parse(s: &str) -> Option<Mode> {
        Some(match s {
            "plain" => Mode::Plain,
            "pollfirst" => Mode::PollFirst,
            "link" => Mode::Link,
            "linkpf" => Mode::LinkPollFirst,
            "multishot" => Mode::Multishot,
            _ => return None,
        })
    }

    /// The receive after a response carries `POLL_FIRST`.
    fn poll_first(self) -> bool {
        matches!(self, Mode::PollFirst | Mode::LinkPollFirst)
    }

    /// A response's send is linked to the next receive.
    fn link(self) -> bool {
        matches!(self, Mode::Link | Mode::LinkPollFirst)
    }
}

/// One connection's slot. Its buffers stay when the connection closes and
/// are reused by the next connection that takes the slot (the kernel may
/// hold pointers into them only while an operation is in flight, and a slot
/// is freed only when none is).
struct Slot {
    /// The socket; `None` while the slot is free.
    fd: Option<Sock>,
    /// The protocol state.
    conn: Conn,
    /// Received bytes not yet consumed by [`Conn::process`]. A single-shot
    /// receive writes into its spare capacity; it is neither moved nor
    /// grown while one is in flight.
    input: Vec<u8>,
    /// Responses being sent; not touched while a send is in flight.
    out: Vec<u8>,
    /// Bytes of `out` sent so far.
    sent: usize,
    /// Operations of this connection in flight.
    inflight: u8,
    /// A receive (single-shot, or a multishot not yet ended) is in flight.
    recv_armed: bool,
    /// A send is in flight.
    sending: bool,
    /// Bytes arrived during a send; process them when it completes.
    pending: bool,
    /// The answer being sent closes the connection.
    close_after_send: bool,
    /// FIN sent after a closing answer: what arrives is discarded.
    draining: bool,
    /// Bytes discarded so far while draining.
    drained: usize,
    /// The connection is over: close it once nothing is in flight.
    dead: bool,
}

impl Slot {
    fn new() -> Slot {
        Slot {
            fd: None,
            conn: Conn::new(),
            input: Vec::with_capacity(conn::READ_CAPACITY),
            out: Vec::with_capacity(conn::WRITE_CAPACITY),
            sent: 0,
            inflight: 0,
            recv_armed: false,
            sending: false,
            pending: false,
            close_after_send: false,
            draining: false,
            drained: 0,
            dead: false,
        }
    }

    /// Makes the slot ready for a new connection, keeping its buffers.
    fn reset(&mut self) {
        self.fd = None;
        self.conn = Conn::new();
        self.input.clear();
        self.out.clear();
        self.sent = 0;
        self.inflight = 0;
        self.recv_armed = false;
        self.sending = false;
        self.pending = false;
        self.close_after_send = false;
        self.draining = false;
        self.drained = 0;
        self.dead = false;
    }
}

/// The provided-buffer ring of the `multishot` mode.
struct BufRing {
    /// The ring's entries (page-aligned, `PBUF_COUNT` of them).
    entries: *mut types::BufRingEntry,
    /// The buffers, `PBUF_LEN` bytes each, back to back.
    bufs: Box<[u8]>,
    /// Our copy of the ring's tail.
    tail: u16,
}

impl BufRing {
    fn layout() -> Layout {
        Layout::from_size_align(
            usize::from(PBUF_COUNT) * std::mem::size_of::<types::BufRingEntry>(),
            4096,
        )
        .expect("a valid layout")
    }

    /// Allocates the ring and its buffers, registers them as group
    /// [`BGID`] and provides every buffer.
    fn new(ring: &IoUring) -> io::Result<BufRing> {
        // SAFETY: the layout has a non-zero size.
        let entries = unsafe { alloc::alloc_zeroed(Self::layout()) }.cast::<types::BufRingEntry>();
        if entries.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let mut br = BufRing {
            entries,
            bufs: vec![0u8; usize::from(PBUF_COUNT) * PBUF_LEN].into_boxed_slice(),
            tail: 0,
        };
        // SAFETY: the entries are page-aligned memory of PBUF_COUNT entries
        // that lives (leaked with the server, never freed while the ring
        // exists) as long as the registration.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(entries as u64, PBUF_COUNT, BGID, 0)?;
        }
        for bid in 0..PBUF_COUNT {
            br.provide(bid);
        }
        Ok(br)
    }

    /// The bytes of buffer `bid`.
    fn buf(&self, bid: u16, len: usize) -> &[u8] {
        let start = usize::from(bid) * PBUF_LEN;
        &self.bufs[start..start + len]
    }

    /// Gives buffer `bid` back to the kernel.
    fn provide(&mut self, bid: u16) {
        let mask = PBUF_COUNT - 1;
        let addr = self.bufs[usize::from(bid) * PBUF_LEN..].as_ptr() as u64;
        // SAFETY: `tail & mask` < PBUF_COUNT, so the entry is within the
        // allocation; the kernel reads only entries between its head and
        // the published tail, and this one is past the published tail.
        let entry = unsafe { &mut *self.entries.add(usize::from(self.tail & mask)) };
        entry.set_addr(addr);
        entry.set_len(PBUF_LEN as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: `entries` is the ring's base, so `tail` points at the
        // ring's tail field: a u16 shared with the kernel, suitably aligned,
        // written by us only.
        let tail = unsafe { &*types::BufRingEntry::tail(self.entries).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }
}

/// The server's state.
struct Server {
    ring: IoUring,
    mode: Mode,
    /// Connections are registered files (`--fixed`).
    fixed: bool,
    listener: std::net::TcpListener,
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// The provided buffers (`multishot` only).
    bufs: Option<BufRing>,
    /// The pause before re-arming the accept; read by the kernel when the
    /// timeout SQE is submitted, so kept here, where it does not move.
    pause: types::Timespec,
}

fn usage() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "usage: raw_http [ADDR] [--mode plain|pollfirst|link|linkpf|multishot] [--fixed] [--ring defer|coop]",
    )
}

/// Serves HTTP on the address argument (default `127.0.0.1:8080`) until
/// killed.
fn main() -> io::Result<()> {
    let mut addr = "127.0.0.1:8080".to_string();
    let mut mode = Mode::Plain;
    let mut fixed = false;
    let mut coop = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--mode" {
            let m = args.next().ok_or_else(usage)?;
            mode = Mode::parse(&m).ok_or_else(usage)?;
        } else if let Some(m) = a.strip_prefix("--mode=") {
            mode = Mode::parse(m).ok_or_else(usage)?;
        } else if a == "--fixed" {
            fixed = true;
        } else if a == "--ring" {
            coop = match args.next().as_deref() {
                Some("coop") => true,
                Some("defer") => false,
                _ => return Err(usage()),
            };
        } else if a.starts_with('-') {
            return Err(usage());
        } else {
            addr = a;
        }
    }
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr}: {e}")))?;
    let listener = bench::listen(addr)?;
    println!(
        "raw_http: listening on http://{} (mode {mode:?}{}{})",
        listener.local_addr()?,
        if fixed { ", registered files" } else { "" },
        if coop { ", COOP_TASKRUN ring" } else { "" }
    );
    run(listener, mode, fixed, coop)
}

/// Serves on `listener` until an error: `mode`, `fixed` (`--fixed`) and
/// `coop` (`--ring coop`) as the command line says.
fn run(listener: std::net::TcpListener, mode: Mode, fixed: bool, coop: bool) -> io::Result<()> {
    let entries = 4096;
    let ring = if coop {
        IoUring::builder()
            .setup_cqsize(4 * entries)
            .setup_single_issuer()
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .build(entries)?
    } else {
        bench::uring::ring(entries, 4 * entries)?
    };
    if fixed {
        ring.submitter().register_files_sparse(FIXED_FILES)?;
        bench::uring::set_nodelay(listener.as_raw_fd());
    }
    let bufs = match mode {
        Mode::Multishot => Some(BufRing::new(&ring)?),
        _ => None,
    };
    let mut server = Server {
        ring,
        mode,
        fixed,
        listener,
        slots: Vec::new(),
        free: Vec::new(),
        bufs,
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
                    IGNORE => {}
                    ud => {
                        let slot = (ud >> 1) as usize;
                        if ud & 1 == SEND {
                            self.sent(slot, res)?;
                        } else {
                            self.received(slot, res, flags)?;
                        }
                    }
                }
            }
        }
    }

    /// Queues SQEs (a linked chain stays in one submission: room for all
    /// of them is made first).
    fn push(&mut self, sqes: &[squeue::Entry]) -> io::Result<()> {
        let room = {
            let sq = self.ring.submission();
            sq.capacity() - sq.len()
        };
        if room < sqes.len() {
            self.ring.submit()?;
        }
        for sqe in sqes {
            // SAFETY: the SQEs queued here point either at nothing, at
            // `self.pause` (which lives, unmoved, as long as the server),
            // into a slot's boxed-in-a-Vec buffers, which are never freed
            // (slots are only reused, and only once nothing of theirs is in
            // flight) and not moved or grown while an operation that
            // points into them is in flight.
            unsafe { bench::uring::push(&mut self.ring, sqe) }?;
        }
        Ok(())
    }

    fn arm_accept(&mut self) -> io::Result<()> {
        let sqe = opcode::AcceptMulti::new(types::Fd(self.listener.as_raw_fd()))
            .allocate_file_index(self.fixed)
            // A registered file has no descriptor to close on exec (and
            // the kernel refuses the flag for one).
            .flags(if self.fixed { 0 } else { libc::SOCK_CLOEXEC })
            .build()
            .user_data(ACCEPT);
        self.push(&[sqe])
    }

    fn accepted(&mut self, res: i32, flags: u32) -> io::Result<()> {
        let more = cqueue::more(flags);
        if res >= 0 {
            let fd = if self.fixed {
                // The slot of the table of registered files it went to.
                Sock::Fixed(res as u32)
            } else {
                // SAFETY: a successful accept returns a new descriptor, ours.
                let fd = unsafe { OwnedFd::from_raw_fd(res) };
                bench::uring::set_nodelay(fd.as_raw_fd());
                Sock::Owned(fd)
            };
            let slot = match self.free.pop() {
                Some(i) => i,
                None => {
                    self.slots.push(Slot::new());
                    self.slots.len() - 1
                }
            };
            self.slots[slot].fd = Some(fd);
            self.arm_recv(slot, false)?;
        } else {
            let errno = -res;
            if errno != libc::ECONNABORTED && errno != libc::EINTR {
                eprintln!(
                    "raw_http: accept failed: {}",
                    io::Error::from_raw_os_error(errno)
                );
            }
            if !more && errno != libc::ECONNABORTED && errno != libc::EINTR {
                // Out of resources, say: pause before trying again rather
                // than spin on an accept that keeps failing.
                let sqe = opcode::Timeout::new(&self.pause)
                    .build()
                    .user_data(ACCEPT_PAUSE);
                return self.push(&[sqe]);
            }
        }
        if !more {
            self.arm_accept()?;
        }
        Ok(())
    }

    /// The receive SQE of `slot`; `after_response`: it follows a response.
    fn recv_sqe(&mut self, slot: usize, after_response: bool) -> Option<squeue::Entry> {
        let mode = self.mode;
        let s = &mut self.slots[slot];
        let sock = s.fd.as_ref()?;
        let ud = (slot as u64) << 1 | RECV;
        s.recv_armed = true;
        s.inflight += 1;
        if mode == Mode::Multishot {
            return Some(with_fd!(sock, |fd| opcode::RecvMulti::new(fd, BGID)
                .build()
                .user_data(ud)));
        }
        if s.draining {
            s.input.clear();
        }
        let len = s.input.len();
        let spare = s.input.capacity() - len;
        // The spare capacity, which `Conn::process` keeps at least
        // READ_CAPACITY - MAX_HEAD bytes large.
        let ptr = s.input.spare_capacity_mut().as_mut_ptr().cast::<u8>();
        let ioprio = if after_response && mode.poll_first() {
            POLL_FIRST
        } else {
            0
        };
        Some(with_fd!(sock, |fd| opcode::Recv::new(
            fd,
            ptr,
            spare as u32
        )
        .ioprio(ioprio)
        .build()
        .user_data(ud)))
    }

    fn arm_recv(&mut self, slot: usize, after_response: bool) -> io::Result<()> {
        match self.recv_sqe(slot, after_response) {
            Some(sqe) => self.push(&[sqe]),
            None => Ok(()),
        }
    }

    /// Sends the rest of `out`; `link_recv`: linked to the next receive.
    fn send(&mut self, slot: usize, link_recv: bool) -> io::Result<()> {
        let mode = self.mode;
        let s = &mut self.slots[slot];
        let Some(sock) = &s.fd else { return Ok(()) };
        let rest = &s.out[s.sent..];
        let mut flags = libc::MSG_NOSIGNAL;
        if mode.link() {
            flags |= libc::MSG_WAITALL;
        }
        let mut sqe = with_fd!(sock, |fd| opcode::Send::new(
            fd,
            rest.as_ptr(),
            rest.len() as u32
        )
        .flags(flags)
        .build()
        .user_data((slot as u64) << 1 | SEND));
        s.sending = true;
        s.inflight += 1;
        if link_recv && !s.recv_armed {
            sqe = sqe.flags(squeue::Flags::IO_LINK);
            if let Some(recv) = self.recv_sqe(slot, true) {
                return self.push(&[sqe, recv]);
            }
        }
        self.push(&[sqe])
    }

    /// Answers what `input` holds, then sends, or receives more.
    fn process(&mut self, slot: usize) -> io::Result<()> {
        let mode = self.mode;
        let s = &mut self.slots[slot];
        s.pending = false;
        let next = s.conn.process(&mut s.input, &mut s.out);
        if next == Next::Close {
            s.close_after_send = true;
        }
        if !s.out.is_empty() {
            s.sent = 0;
            let link = mode.link() && !s.close_after_send;
            self.send(slot, link)
        } else if s.close_after_send {
            self.start_drain(slot)
        } else if !s.recv_armed {
            self.arm_recv(slot, false)
        } else {
            Ok(())
        }
    }

    /// After a closing answer: FIN, then discard what still arrives.
    fn start_drain(&mut self, slot: usize) -> io::Result<()> {
        self.shutdown(slot, libc::SHUT_WR)?;
        let s = &mut self.slots[slot];
        s.draining = true;
        if s.recv_armed {
            Ok(())
        } else {
            self.arm_recv(slot, false)
        }
    }

    /// The connection is over: shut its socket down (which ends whatever
    /// operation of it is armed) and close it once nothing is in flight.
    fn kill(&mut self, slot: usize) -> io::Result<()> {
        if !self.slots[slot].dead {
            self.slots[slot].dead = true;
            self.shutdown(slot, libc::SHUT_RDWR)?;
        }
        self.close_if_idle(slot)
    }

    /// Shuts the socket of `slot` down (`how`: `SHUT_WR`, `SHUT_RDWR`).
    fn shutdown(&mut self, slot: usize, how: i32) -> io::Result<()> {
        match &self.slots[slot].fd {
            Some(Sock::Owned(fd)) => {
                // SAFETY: plain syscall on a descriptor we own.
                unsafe { libc::shutdown(fd.as_raw_fd(), how) };
                Ok(())
            }
            Some(Sock::Fixed(i)) => {
                let sqe = opcode::Shutdown::new(types::Fixed(*i), how)
                    .build()
                    .user_data(IGNORE);
                self.push(&[sqe])
            }
            None => Ok(()),
        }
    }

    fn close_if_idle(&mut self, slot: usize) -> io::Result<()> {
        let s = &mut self.slots[slot];
        if s.dead && s.inflight == 0 && s.fd.is_some() {
            let sock = s.fd.take();
            s.reset();
            self.free.push(slot);
            if let Some(Sock::Fixed(i)) = sock {
                let sqe = opcode::Close::new(types::Fixed(i))
                    .build()
                    .user_data(IGNORE);
                return self.push(&[sqe]);
            }
        }
        Ok(())
    }

    /// A receive of `slot` completed.
    fn received(&mut self, slot: usize, res: i32, flags: u32) -> io::Result<()> {
        let multishot = self.mode == Mode::Multishot;
        // A provided buffer, if the CQE carries one: its bytes go into the
        // input (unless the connection is over or draining) and the buffer
        // goes back to the ring at once.
        let mut copied = false;
        if let (Some(bid), Some(br)) = (cqueue::buffer_select(flags), self.bufs.as_mut()) {
            let s = &mut self.slots[slot];
            if res > 0 && !s.dead && !s.draining {
                s.input.extend_from_slice(br.buf(bid, res as usize));
                copied = true;
            }
            br.provide(bid);
        }
        let s = &mut self.slots[slot];
        let ended = !multishot || !cqueue::more(flags);
        if ended {
            s.recv_armed = false;
            s.inflight -= 1;
        }
        if s.dead {
            return self.close_if_idle(slot);
        }
        if res < 0 {
            return match -res {
                libc::EINTR | libc::EAGAIN | libc::ENOBUFS if ended => self.arm_recv(slot, false),
                libc::EINTR | libc::EAGAIN | libc::ENOBUFS => Ok(()),
                // The linked send ended short: its completion queues the
                // rest and then the receive.
                libc::ECANCELED if s.sending => Ok(()),
                libc::ECANCELED => self.arm_recv(slot, true),
                _ => self.kill(slot),
            };
        }
        if res == 0 {
            return self.kill(slot);
        }
        let n = res as usize;
        if s.draining {
            s.drained += n;
            s.input.clear();
            if s.drained > DRAIN_LIMIT {
                return self.kill(slot);
            }
            return if ended {
                self.arm_recv(slot, false)
            } else {
                Ok(())
            };
        }
        if !copied {
            debug_assert!(n <= s.input.capacity() - s.input.len());
            // SAFETY: the kernel wrote `n` bytes into the spare capacity it
            // was given, which starts at `len` (the input is not touched
            // while a receive is in flight).
            unsafe { s.input.set_len(s.input.len() + n) };
        }
        if s.sending || s.close_after_send {
            // Multishot: the bytes wait for the send in flight.
            s.pending = true;
            return if multishot && ended {
                self.arm_recv(slot, false)
            } else {
                Ok(())
            };
        }
        if multishot && ended {
            self.arm_recv(slot, false)?;
        }
        self.process(slot)
    }

    /// A send of `slot` completed.
    fn sent(&mut self, slot: usize, res: i32) -> io::Result<()> {
        let s = &mut self.slots[slot];
        s.sending = false;
        s.inflight -= 1;
        if s.dead {
            return self.close_if_idle(slot);
        }
        if res <= 0 {
            if matches!(-res, libc::EINTR | libc::EAGAIN) {
                return self.send(slot, false);
            }
            return self.kill(slot);
        }
        s.sent += res as usize;
        if s.sent < s.out.len() {
            // Short: the rest, unlinked (a linked receive, if any, was
            // cancelled; it is queued again after the rest).
            return self.send(slot, false);
        }
        s.out.clear();
        s.sent = 0;
        if s.close_after_send {
            return self.start_drain(slot);
        }
        if s.pending {
            return self.process(slot);
        }
        if !s.recv_armed {
            return self.arm_recv(slot, true);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    const OK: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";
    const NOT_FOUND: &[u8] =
        b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nNot Found\n";
    const CLOSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nConnection: close\r\n\r\nHello, World!";

    /// Starts a server in `mode` on an ephemeral port, in a thread that
    /// serves until the test process exits.
    fn start(mode: Mode, fixed: bool, coop: bool) -> SocketAddr {
        let listener = bench::listen("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || run(listener, mode, fixed, coop));
        addr
    }

    /// Reads exactly `n` bytes (bounded by the stream's read timeout).
    fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        s.read_exact(&mut buf).unwrap();
        buf
    }

    /// Every mode answers a request, two pipelined ones in order, many
    /// pipelined ones whose answers outgrow a send (the client reads them
    /// only after sending them all), and a closing request, after which
    /// the server closes the connection.
    #[test]
    fn every_mode_answers_and_closes() {
        let variants = [
            (Mode::Plain, false, false),
            (Mode::PollFirst, false, false),
            (Mode::Link, false, false),
            (Mode::LinkPollFirst, false, false),
            (Mode::Multishot, false, false),
            (Mode::Plain, true, false),
            (Mode::Multishot, true, false),
            (Mode::Plain, false, true),
        ];
        for (mode, fixed, coop) in variants {
            let what = format!("{mode:?} fixed {fixed} coop {coop}");
            let addr = start(mode, fixed, coop);
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
            assert_eq!(read_n(&mut s, OK.len()), OK, "{what}");
            s.write_all(b"GET /x HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n")
                .unwrap();
            let want = [NOT_FOUND, OK].concat();
            assert_eq!(read_n(&mut s, want.len()), want, "{what}");
            let n = 3000;
            let mut writer = s.try_clone().unwrap();
            let sender = std::thread::spawn(move || {
                let reqs = b"GET / HTTP/1.1\r\n\r\n".repeat(n);
                writer.write_all(&reqs).unwrap();
            });
            let got = read_n(&mut s, OK.len() * n);
            assert!(got == OK.repeat(n), "{what}: pipelined answers differ");
            sender.join().unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).unwrap();
            assert_eq!(rest, CLOSE, "{what}");
        }
    }

    #[test]
    fn modes_parse() {
        assert_eq!(Mode::parse("plain"), Some(Mode::Plain));
        assert_eq!(Mode::parse("linkpf"), Some(Mode::LinkPollFirst));
        assert_eq!(Mode::parse("multishot"), Some(Mode::Multishot));
        assert_eq!(Mode::parse("nope"), None);
        assert!(Mode::LinkPollFirst.link() && Mode::LinkPollFirst.poll_first());
        assert!(!Mode::Multishot.link() && !Mode::Plain.poll_first());
    }
}
