//! The load generator of the TCP echo scenario: the same client against every
//! echo server.
//!
//! ```text
//! echo_load --addr A --conns N --size B --secs S [--warmup W] [--rate R] [--marks]
//! ```
//!
//! Opens `N` connections to `A` up front (blocking `connect`, `TCP_NODELAY`),
//! then each connection plays ping-pong: it sends a `B`-byte message, reads
//! exactly `B` bytes back, checks them, and sends the next one. The message
//! carries the connection's number and a per-connection counter, so a wrong
//! or stale echo is caught; such a message counts as an error, not as a
//! message. A connection that fails (the server closes it, resets it, or an
//! I/O error) counts as an error and stops; when all of them have stopped the
//! program ends early and exits non-zero.
//!
//! The first `W` seconds (default 1) are a warm-up; then the message count and
//! the latency histogram are reset and the measured window of `S` seconds
//! begins (errors are counted over the whole run, warm-up included, so that
//! none is hidden). Latency runs from the moment a message is handed to the
//! kernel to the moment its last echoed byte has been received, and goes into
//! a fixed log-linear histogram (exact below 128 ns, then 64 buckets per
//! power of two, so within 1.6%; no allocation per message).
//!
//! With `--rate R` the load is open-loop at a fixed rate: the program keeps a
//! schedule of `R` send times per second (across all connections), and an
//! idle connection sends only when the next slot of the schedule has come.
//! If no connection is idle when a slot comes, the slot waits for one, and
//! latency is measured from the **scheduled** time, so a slow server is
//! charged for the queueing it causes (no coordinated omission).
//!
//! Output, on stdout:
//!
//! ```text
//! RESULT msgs=<count> secs=<measured seconds> rate=<msgs per second> p50_us=<f> p99_us=<f> p999_us=<f> client_cpu=<f> errors=<count>
//! ```
//!
//! With `--marks` it also prints `MARK connected` once every connection is
//! open, `MARK window` when the measured window begins and `MARK end` when
//! it ends (each line flushed at once), so that a runner watching the
//! output can sample the server (its memory, its CPU time) at those points;
//! the connections then stay open (and quiet) for 150 ms more before they
//! are closed.
//!
//! `client_cpu` is this process's CPU time (user + system, from
//! `getrusage(RUSAGE_SELF)`) over the measured window divided by the window's
//! wall time: 1.0 means this client saturated its core.
//!
//! # Why the client is not the bottleneck
//!
//! The client must spend less CPU per message than the servers, or the suite
//! would measure the client. It therefore uses no runtime: one thread, one
//! io_uring ring (`SINGLE_ISSUER | DEFER_TASKRUN` when the kernel has them),
//! no allocation and no per-connection wakeups. A message costs two SQEs
//! (the send and the receive are queued together, the receive with
//! `IORING_RECVSEND_POLL_FIRST` so it does not first try a doomed
//! non-blocking read), two CQEs, one `memcmp` and a histogram increment;
//! every SQE of a loop iteration goes to the kernel in the one
//! `io_uring_enter` that also waits for the next completions (with 100
//! busy connections, ~26 messages per `io_uring_enter`, by `strace -c`), and
//! the clock is read three times per iteration, not per message.
//!
//! How it was checked, on the 2-core development VM (busy with other work at
//! the time, so only comparisons within one run mean anything): server
//! pinned to core 0, client to core 1, and `/proc/<pid>/schedstat` of both
//! (time running, time runnable but waiting) read over 2 s of the measured
//! window, the rest of the time being time asleep. The side that is never
//! asleep is the bottleneck.
//!
//! - 1000 connections, 64 bytes: the server saturated, the client did not.
//!   `raw`: server running 96% / asleep 0%, client running 81% / asleep 17%;
//!   `ours`: server asleep 1%, client asleep 22%.
//! - 100 connections, 64 bytes: client and server used about the same CPU
//!   per message (running 41-43% each, for `raw`, `ours` and `tokio`).
//!   `perf record` of the client shows why: 96% of its time is in the
//!   kernel, two thirds of it in `send`, which on loopback also runs the
//!   receiving socket's TCP processing (softirq) on the sender's core. A
//!   message therefore costs a client about the kernel work it costs a
//!   server, and no client can be much cheaper than a hand-written io_uring
//!   server such as `echo_server raw`.
//!
//! So: against a runtime whose own overhead is visible the server saturates
//! first; against `raw` (or a server as lean) with few connections the two
//! sides are even, and the measured rate is a lower bound of the server's
//! capacity. Compare `client_cpu` with the server's CPU time before reading
//! a result: if `client_cpu` is near 1.0 the client was the limit.
//!
//! In fixed-rate mode the client wakes for each slot of the schedule (a
//! short timeout per loop iteration), so a message costs it more than in the
//! closed loop (0.3-0.7 of a core at 20000 messages/s on the busy VM, against
//! 0.23-0.29 for the servers); that mode is meant for rates well below
//! saturation, where this does not matter.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bench::hist::Histogram;
use io_uring::{opcode, squeue, types, IoUring};

/// `IORING_RECVSEND_POLL_FIRST` (in the SQE's `ioprio`): wait for data before
/// trying to receive, instead of trying once first. The echo has not come
/// back yet when the receive is queued together with its send.
const RECVSEND_POLL_FIRST: u16 = 1;

/// Tag in the low bit of `user_data`: the operation is a receive (0: a send).
const OP_RECV: u64 = 1;

/// How many error messages go to stderr (the count goes on regardless).
const MAX_LOGGED: u64 = 5;

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("echo_load: {e}");
            eprintln!(
                "usage: echo_load --addr A --conns N --size B --secs S [--warmup W] [--rate R] [--marks]"
            );
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(report) => {
            println!(
                "RESULT msgs={} secs={:.4} rate={:.0} p50_us={:.1} p99_us={:.1} p999_us={:.1} client_cpu={:.3} errors={}",
                report.msgs,
                report.secs,
                report.msgs as f64 / report.secs,
                report.p50_us,
                report.p99_us,
                report.p999_us,
                report.client_cpu,
                report.errors
            );
            if report.alive == 0 {
                eprintln!("echo_load: every connection failed");
                ExitCode::FAILURE
            } else if report.msgs == 0 {
                eprintln!("echo_load: no message was echoed correctly in the measured window");
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("echo_load: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The command line.
struct Args {
    addr: SocketAddr,
    conns: usize,
    size: usize,
    secs: f64,
    warmup: f64,
    rate: Option<f64>,
    /// Print `MARK ...` lines at the run's milestones.
    marks: bool,
}

/// Prints a `MARK <what>` line and flushes it, if marks are on.
fn mark(on: bool, what: &str) {
    if on {
        use std::io::Write as _;
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "MARK {what}");
        let _ = out.flush();
    }
}

impl Args {
    fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
        let (mut addr, mut conns, mut size, mut secs) = (None, None, None, None);
        let (mut warmup, mut rate, mut marks) = (1.0, None, false);
        while let Some(flag) = it.next() {
            if flag == "--marks" {
                marks = true;
                continue;
            }
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let bad = |e: &dyn std::fmt::Display| format!("bad value {value:?} for {flag}: {e}");
            match flag.as_str() {
                "--addr" => {
                    let resolved = value
                        .to_socket_addrs()
                        .map_err(|e| bad(&e))?
                        .next()
                        .ok_or_else(|| bad(&"no address"))?;
                    addr = Some(resolved);
                }
                "--conns" => conns = Some(value.parse::<usize>().map_err(|e| bad(&e))?),
                "--size" => size = Some(value.parse::<usize>().map_err(|e| bad(&e))?),
                "--secs" => secs = Some(value.parse::<f64>().map_err(|e| bad(&e))?),
                "--warmup" => warmup = value.parse::<f64>().map_err(|e| bad(&e))?,
                "--rate" => rate = Some(value.parse::<f64>().map_err(|e| bad(&e))?),
                other => return Err(format!("unknown flag {other:?}")),
            }
        }
        let args = Args {
            addr: addr.ok_or("--addr is required")?,
            conns: conns.ok_or("--conns is required")?,
            size: size.ok_or("--size is required")?,
            secs: secs.ok_or("--secs is required")?,
            warmup,
            rate,
            marks,
        };
        if args.conns == 0 || args.conns > (u32::MAX >> 1) as usize {
            return Err("--conns must be at least 1 (and fewer than 2^31)".into());
        }
        if args.size == 0 || args.size > u32::MAX as usize {
            return Err("--size must be between 1 and 2^32-1".into());
        }
        if !(args.secs > 0.0 && args.secs.is_finite()) {
            return Err("--secs must be positive".into());
        }
        if !(args.warmup >= 0.0 && args.warmup.is_finite()) {
            return Err("--warmup must be zero or positive".into());
        }
        if let Some(r) = args.rate {
            if !(r > 0.0 && r.is_finite()) {
                return Err("--rate must be positive".into());
            }
        }
        Ok(args)
    }
}

/// What one run measured.
struct Report {
    msgs: u64,
    secs: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    client_cpu: f64,
    errors: u64,
    alive: usize,
}

fn run(args: &Args) -> io::Result<Report> {
    // Not fatal: `connect` reports running out of descriptors clearly enough.
    let _ = bench::raise_nofile_limit();
    let mut conns = Vec::with_capacity(args.conns);
    for id in 0..args.conns {
        let stream =
            TcpStream::connect_timeout(&args.addr, Duration::from_secs(5)).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("connection {id} of {} to {}: {e}", args.conns, args.addr),
                )
            })?;
        stream.set_nodelay(true)?;
        conns.push(Conn::new(OwnedFd::from(stream), id as u32, args.size));
    }
    mark(args.marks, "connected");
    let mut client = Client::new(conns, args.size, args.rate)?;
    client.marks = args.marks;
    let result = client.run(
        Duration::from_secs_f64(args.warmup),
        Duration::from_secs_f64(args.secs),
    );
    if args.marks {
        // Leave the runner time to sample the server after `MARK end`,
        // before the connections close (closing them costs it CPU).
        std::thread::sleep(Duration::from_millis(150));
    }
    client.shut_down();
    result
}

/// One connection and its two message buffers.
///
/// The buffers are boxed slices, allocated once when the connection opens
/// and freed only when the `Client` is dropped; the kernel receives raw
/// pointers into them. `Client::shut_down` makes sure no operation is in
/// flight any more before that (or leaks them if some still are).
struct Conn {
    fd: OwnedFd,
    /// The message being sent: the counter (little-endian, first 8 bytes),
    /// the connection's number (next 4), then a per-connection pattern.
    send_buf: Box<[u8]>,
    /// Where the echo is received.
    recv_buf: Box<[u8]>,
    /// Bytes of the current message sent so far.
    sent: usize,
    /// Bytes of its echo received so far.
    recvd: usize,
    /// A send SQE is in flight.
    send_busy: bool,
    /// A receive SQE is in flight.
    recv_busy: bool,
    /// Number of the current message.
    counter: u64,
    /// When the current message was sent (or, at a fixed rate, scheduled).
    start: Instant,
    /// Still usable (no failure so far).
    alive: bool,
}

impl Conn {
    fn new(fd: OwnedFd, id: u32, size: usize) -> Conn {
        let mut send_buf = vec![0u8; size].into_boxed_slice();
        for (j, b) in send_buf.iter_mut().enumerate() {
            *b = (id as usize)
                .wrapping_mul(7)
                .wrapping_add(j.wrapping_mul(13)) as u8
                ^ 0x5a;
        }
        let id_bytes = id.to_le_bytes();
        for (dst, src) in send_buf.iter_mut().skip(8).zip(id_bytes) {
            *dst = src;
        }
        Conn {
            fd,
            send_buf,
            recv_buf: vec![0u8; size].into_boxed_slice(),
            sent: 0,
            recvd: 0,
            send_busy: false,
            recv_busy: false,
            counter: 0,
            start: Instant::now(),
            alive: true,
        }
    }

    fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The event loop and its counters.
struct Client {
    ring: IoUring,
    conns: Vec<Conn>,
    size: usize,
    /// Interval between two scheduled sends, in fixed-rate mode.
    interval: Option<Duration>,
    /// Connections waiting for their slot of the schedule (fixed rate).
    idle: VecDeque<u32>,
    /// Connections whose message was queued this iteration and gets its
    /// start time just before the SQEs go to the kernel (closed loop).
    to_stamp: Vec<u32>,
    /// Completions copied out of the CQ, so handlers can queue SQEs.
    cqes: Vec<(u64, i32)>,
    /// SQEs pushed whose CQE has not been seen.
    inflight: usize,
    alive: usize,
    msgs: u64,
    errors: u64,
    hist: Histogram,
    /// Print `MARK window` / `MARK end`.
    marks: bool,
}

impl Client {
    fn new(conns: Vec<Conn>, size: usize, rate: Option<f64>) -> io::Result<Client> {
        let n = conns.len();
        // At most two operations per connection are in flight.
        let sq = (2 * n).next_power_of_two().clamp(64, 32768) as u32;
        let cq = (2 * n).next_power_of_two().clamp(2 * sq as usize, 65536) as u32;
        let ring = bench::uring::ring(sq, cq)?;
        let idle = if rate.is_some() {
            (0..n as u32).collect()
        } else {
            VecDeque::new()
        };
        Ok(Client {
            ring,
            size,
            interval: rate.map(|r| Duration::from_secs_f64(1.0 / r)),
            idle,
            to_stamp: Vec::with_capacity(n),
            cqes: Vec::with_capacity(cq as usize),
            inflight: 0,
            alive: n,
            msgs: 0,
            errors: 0,
            hist: Histogram::new(),
            marks: false,
            conns,
        })
    }

    fn run(&mut self, warmup: Duration, secs: Duration) -> io::Result<Report> {
        let begin = Instant::now();
        let warm_end = begin + warmup;
        let mut window: Option<(Instant, f64)> = None;
        let mut end = warm_end + secs;
        let mut next_slot = begin;
        if self.interval.is_none() {
            for i in 0..self.conns.len() {
                self.start_message(i, None)?;
            }
        }
        let stop = loop {
            let now = Instant::now();
            if window.is_none() && now >= warm_end {
                // The measured window begins: reset what it measures.
                self.msgs = 0;
                self.hist.clear();
                window = Some((now, bench::cpu_secs(libc::RUSAGE_SELF)));
                end = now + secs;
                mark(self.marks, "window");
            }
            if window.is_some() && now >= end {
                break now;
            }
            if self.alive == 0 {
                break now;
            }
            if let Some(interval) = self.interval {
                while next_slot <= now {
                    let Some(i) = self.idle.pop_front() else {
                        break;
                    };
                    self.start_message(i as usize, Some(next_slot))?;
                    next_slot += interval;
                }
            }
            let mut deadline = if window.is_some() { end } else { warm_end };
            if self.interval.is_some() && !self.idle.is_empty() {
                deadline = deadline.min(next_slot);
            }
            // Submit, and wait for a completion until the deadline.
            let now = Instant::now();
            for &i in &self.to_stamp {
                self.conns[i as usize].start = now;
            }
            self.to_stamp.clear();
            let res = if deadline <= now {
                self.ring.submit()
            } else {
                let ts = types::Timespec::from(deadline - now);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            };
            if let Err(e) = res {
                match e.raw_os_error() {
                    Some(libc::ETIME | libc::EINTR | libc::EAGAIN | libc::EBUSY) => {}
                    _ => return Err(io::Error::new(e.kind(), format!("io_uring_enter: {e}"))),
                }
            }
            let now = Instant::now();
            self.cqes.clear();
            self.cqes.extend(
                self.ring
                    .completion()
                    .map(|cqe| (cqe.user_data(), cqe.result())),
            );
            for k in 0..self.cqes.len() {
                let (user_data, res) = self.cqes[k];
                self.complete(user_data, res, now)?;
            }
        };
        let (window_start, cpu_start) = window.unwrap_or((begin, 0.0));
        let secs = stop
            .duration_since(window_start)
            .max(Duration::from_nanos(1))
            .as_secs_f64();
        let cpu = bench::cpu_secs(libc::RUSAGE_SELF) - cpu_start;
        mark(self.marks, "end");
        Ok(Report {
            msgs: self.msgs,
            secs,
            p50_us: self.hist.quantile(0.50) / 1000.0,
            p99_us: self.hist.quantile(0.99) / 1000.0,
            p999_us: self.hist.quantile(0.999) / 1000.0,
            client_cpu: cpu / secs,
            errors: self.errors,
            alive: self.alive,
        })
    }

    /// Starts connection `i`'s next message: a send and a receive, queued
    /// together. `start` is its scheduled time at a fixed rate; otherwise
    /// the time it goes to the kernel is taken later.
    fn start_message(&mut self, i: usize, start: Option<Instant>) -> io::Result<()> {
        let c = &mut self.conns[i];
        let counter = c.counter.to_le_bytes();
        for (dst, src) in c.send_buf.iter_mut().zip(counter) {
            *dst = src;
        }
        c.sent = 0;
        c.recvd = 0;
        match start {
            Some(t) => c.start = t,
            None => self.to_stamp.push(i as u32),
        }
        self.queue_send(i)?;
        self.queue_recv(i, true)
    }

    fn queue_send(&mut self, i: usize) -> io::Result<()> {
        let c = &mut self.conns[i];
        let rest = &c.send_buf[c.sent..];
        let sqe = opcode::Send::new(types::Fd(c.raw()), rest.as_ptr(), rest.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data((i as u64) << 1);
        c.send_busy = true;
        self.push(sqe)
    }

    fn queue_recv(&mut self, i: usize, poll_first: bool) -> io::Result<()> {
        let c = &mut self.conns[i];
        let (fd, size) = (c.raw(), self.size);
        let rest = &mut c.recv_buf[c.recvd..size];
        let sqe = opcode::Recv::new(types::Fd(fd), rest.as_mut_ptr(), rest.len() as u32)
            .ioprio(if poll_first { RECVSEND_POLL_FIRST } else { 0 })
            .build()
            .user_data((i as u64) << 1 | OP_RECV);
        c.recv_busy = true;
        self.push(sqe)
    }

    /// Queues one SQE, submitting what is queued first if the SQ is full.
    fn push(&mut self, sqe: squeue::Entry) -> io::Result<()> {
        // SAFETY: every SQE built here points into the boxed buffers of a
        // `Conn` in `self.conns`, which neither move (they are boxed) nor are
        // freed before the operation's CQE has been seen: `shut_down` waits
        // for all of them, or leaks the buffers.
        unsafe { bench::uring::push(&mut self.ring, &sqe) }?;
        self.inflight += 1;
        Ok(())
    }

    /// Handles one completion.
    fn complete(&mut self, user_data: u64, res: i32, now: Instant) -> io::Result<()> {
        self.inflight -= 1;
        let i = (user_data >> 1) as usize;
        let is_recv = user_data & OP_RECV != 0;
        let c = &mut self.conns[i];
        if is_recv {
            c.recv_busy = false;
        } else {
            c.send_busy = false;
        }
        if !c.alive {
            return Ok(());
        }
        if res < 0 {
            return match -res {
                libc::EINTR | libc::EAGAIN => {
                    if is_recv {
                        self.queue_recv(i, false)
                    } else {
                        self.queue_send(i)
                    }
                }
                errno => {
                    let what = if is_recv { "recv" } else { "send" };
                    let e = io::Error::from_raw_os_error(errno);
                    self.fail(i, &format!("{what}: {e}"));
                    Ok(())
                }
            };
        }
        let n = res as usize;
        if is_recv {
            if n == 0 {
                self.fail(i, "the server closed the connection");
                return Ok(());
            }
            c.recvd += n;
            if c.recvd < self.size {
                return self.queue_recv(i, false);
            }
        } else {
            if n == 0 {
                self.fail(i, "send wrote nothing");
                return Ok(());
            }
            c.sent += n;
            if c.sent < self.size {
                return self.queue_send(i);
            }
        }
        if c.sent < self.size || c.recvd < self.size || c.send_busy || c.recv_busy {
            return Ok(());
        }
        // The whole echo is in: check it.
        if c.recv_buf == c.send_buf {
            self.msgs += 1;
            self.hist.record(now.saturating_duration_since(c.start));
        } else {
            self.errors += 1;
            if self.errors <= MAX_LOGGED {
                eprintln!(
                    "echo_load: connection {i}: message {} came back wrong",
                    c.counter
                );
            }
        }
        c.counter += 1;
        if self.interval.is_some() {
            self.idle.push_back(i as u32);
            Ok(())
        } else {
            self.start_message(i, None)
        }
    }

    /// Counts connection `i` as failed and stops using it.
    fn fail(&mut self, i: usize, why: &str) {
        let c = &mut self.conns[i];
        if !c.alive {
            return;
        }
        c.alive = false;
        self.alive -= 1;
        self.errors += 1;
        if self.errors <= MAX_LOGGED {
            eprintln!("echo_load: connection {i}: {why}");
        }
        // Ends the operation still in flight on this socket, if any.
        // SAFETY: a plain syscall on a descriptor this connection owns.
        unsafe { libc::shutdown(c.raw(), libc::SHUT_RDWR) };
    }

    /// Ends every connection and waits (up to two seconds) until the kernel
    /// has finished with every buffer; if it has not, leaks the buffers
    /// rather than free memory the kernel may still write.
    fn shut_down(&mut self) {
        for c in &self.conns {
            // SAFETY: a plain syscall on a descriptor the connection owns;
            // it ends the operations in flight on it.
            unsafe { libc::shutdown(c.raw(), libc::SHUT_RDWR) };
        }
        let give_up = Instant::now() + Duration::from_secs(2);
        while self.inflight > 0 {
            let now = Instant::now();
            if now >= give_up {
                break;
            }
            let ts = types::Timespec::from((give_up - now).min(Duration::from_millis(100)));
            let args = types::SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            let seen = self.ring.completion().count();
            self.inflight -= seen;
        }
        if self.inflight > 0 {
            eprintln!(
                "echo_load: {} operations still in flight at exit; leaking their buffers",
                self.inflight
            );
            std::mem::forget(std::mem::take(&mut self.conns));
        }
    }
}
