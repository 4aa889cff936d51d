//! The client machinery the suite's request-reply load generators
//! (`echo_load`, `resp_load`) share: connecting, the io_uring event loop
//! that plays each connection's exchanges (a request sent, its replies
//! received) closed-loop or at a fixed rate, and the latency histogram.
//!
//! What an exchange sends and what its replies must be is the program's
//! part, an [`Exchange`]; everything else is here. The loop uses no
//! runtime: one thread, one ring (single issuer, deferred task work where
//! the kernel has them), no allocation per exchange. An exchange costs two
//! SQEs (its send, and a receive queued with it that polls first) and two
//! CQEs when the reply comes in one piece; every SQE of a loop iteration
//! goes to the kernel in the one `io_uring_enter` that also waits for the
//! next completions, and the clock is read three times per iteration.
//!
//! At a fixed rate the loop keeps a schedule of send times (one per
//! `interval`, across all connections) and an idle connection sends only
//! when the next slot has come; if none is idle, the slot waits for one
//! and the latency still runs from the **scheduled** time (no coordinated
//! omission). Closed loop, it runs from when the request went to the
//! kernel. Either way it ends with the receipt of the last reply.

use std::collections::VecDeque;
use std::fmt::Display;
use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::str::FromStr;
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types, IoUring};

use crate::hist::Histogram;

/// `IORING_RECVSEND_POLL_FIRST` (in the SQE's `ioprio`): wait for data
/// before trying to receive, instead of trying once first. The reply has
/// not come yet when the receive is queued together with its send.
const RECVSEND_POLL_FIRST: u16 = 1;

/// Tag in the low bit of `user_data`: the operation is a receive (0: a send).
const OP_RECV: u64 = 1;

/// How many error messages go to stderr (the count goes on regardless).
const MAX_LOGGED: u64 = 5;

/// What a load generator's connection sends and expects back: the
/// protocol's part of a connection. Its buffers belong to [`Conn`].
pub trait Exchange {
    /// Writes the next request into `send` (the whole send buffer) and
    /// returns how many of its bytes to send (at most `send.len()`).
    fn next(&mut self, send: &mut [u8]) -> usize;

    /// Looks at the replies received so far, `recv[..filled]` (`recv` is
    /// the whole receive buffer): `Ok(true)` when every reply to the
    /// request is in, `Ok(false)` when more must come, `Err` with what was
    /// wrong, which fails the connection.
    fn received(&mut self, recv: &[u8], filled: usize) -> Result<bool, String>;

    /// The request is sent and its replies are in (`send` and `recv` are
    /// the whole buffers): `Ok` counts the exchange and records its
    /// latency, `Err` with what was wrong counts an error (the connection
    /// goes on).
    fn finish(&mut self, send: &[u8], recv: &[u8]) -> Result<(), String>;
}

/// One connection: its socket, its two buffers, the state of the exchange
/// in flight and the protocol's part.
///
/// The buffers are boxed slices, allocated once when the connection opens
/// and freed only when the client is dropped; the kernel receives raw
/// pointers into them. The client's shut-down makes sure no operation is
/// in flight any more before that (or leaks them if some still are).
#[derive(Debug)]
pub struct Conn<E> {
    fd: OwnedFd,
    /// The request being sent: its first `send_len` bytes.
    send_buf: Box<[u8]>,
    send_len: usize,
    /// Where the replies are received.
    recv_buf: Box<[u8]>,
    /// Bytes of the current request sent so far.
    sent: usize,
    /// Bytes of its replies received so far.
    recvd: usize,
    /// Every reply to the current request is in.
    replied: bool,
    /// A send SQE is in flight.
    send_busy: bool,
    /// A receive SQE is in flight.
    recv_busy: bool,
    /// When the current request was sent (or, at a fixed rate, scheduled).
    start: Instant,
    /// Still usable (no failure so far).
    alive: bool,
    exchange: E,
}

impl<E: Exchange> Conn<E> {
    /// A connection over `fd` whose requests are written into `send_buf`
    /// and whose replies are received into `recv_buf` (neither empty).
    pub fn new(fd: OwnedFd, exchange: E, send_buf: Box<[u8]>, recv_buf: Box<[u8]>) -> Conn<E> {
        Conn {
            fd,
            send_buf,
            send_len: 0,
            recv_buf,
            sent: 0,
            recvd: 0,
            replied: false,
            send_busy: false,
            recv_busy: false,
            start: Instant::now(),
            alive: true,
            exchange,
        }
    }

    fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// What a run is: where to, how many connections, the schedule, how long.
#[derive(Debug)]
pub struct Plan {
    /// The program's name, the prefix of its messages on stderr.
    pub name: &'static str,
    /// The server.
    pub addr: SocketAddr,
    /// How many connections to open.
    pub conns: usize,
    /// Interval between two scheduled requests (across all connections):
    /// `None` runs closed loop.
    pub interval: Option<Duration>,
    /// Seconds of warm-up before the measured window.
    pub warmup: f64,
    /// Seconds of the measured window.
    pub secs: f64,
    /// Print `MARK connected`, `MARK window` and `MARK end`, and keep the
    /// connections open 150 ms after the end.
    pub marks: bool,
}

/// What one run measured.
#[derive(Debug)]
pub struct Report {
    /// Exchanges completed and right in the measured window.
    pub exchanges: u64,
    /// The window's length in seconds.
    pub secs: f64,
    /// Latency quantiles, in microseconds.
    pub p50_us: f64,
    /// The 99th percentile.
    pub p99_us: f64,
    /// The 99.9th percentile.
    pub p999_us: f64,
    /// This process's CPU time over the window divided by its wall time.
    pub client_cpu: f64,
    /// Errors over the whole run, warm-up included.
    pub errors: u64,
    /// Connections that have not failed.
    pub alive: usize,
}

/// The flags every load generator takes, as given on its command line:
/// `--addr A`, `--conns N`, `--secs S`, `--warmup W` (default 1),
/// `--rate R` and `--marks`.
#[derive(Debug)]
pub struct Flags {
    /// `--addr`, resolved.
    pub addr: Option<SocketAddr>,
    /// `--conns`.
    pub conns: Option<usize>,
    /// `--secs`.
    pub secs: Option<f64>,
    /// `--warmup`.
    pub warmup: f64,
    /// `--rate`.
    pub rate: Option<f64>,
    /// `--marks`.
    pub marks: bool,
}

impl Flags {
    /// Parses `it`: `--marks` alone, every other flag followed by its
    /// value. A flag not of [`Flags`] goes to `own(flag, value)`, which
    /// parses it and returns `Ok(true)`, or returns `Ok(false)` if it does
    /// not know it either.
    pub fn parse(
        mut it: impl Iterator<Item = String>,
        mut own: impl FnMut(&str, &str) -> Result<bool, String>,
    ) -> Result<Flags, String> {
        let mut f = Flags {
            addr: None,
            conns: None,
            secs: None,
            warmup: 1.0,
            rate: None,
            marks: false,
        };
        while let Some(flag) = it.next() {
            if flag == "--marks" {
                f.marks = true;
                continue;
            }
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--addr" => {
                    let resolved = value
                        .to_socket_addrs()
                        .map_err(|e| bad_value(&flag, &value, &e))?
                        .next()
                        .ok_or_else(|| bad_value(&flag, &value, &"no address"))?;
                    f.addr = Some(resolved);
                }
                "--conns" => f.conns = Some(parse_value(&flag, &value)?),
                "--secs" => f.secs = Some(parse_value(&flag, &value)?),
                "--warmup" => f.warmup = parse_value(&flag, &value)?,
                "--rate" => f.rate = Some(parse_value(&flag, &value)?),
                other => {
                    if !own(other, &value)? {
                        return Err(format!("unknown flag {other:?}"));
                    }
                }
            }
        }
        Ok(f)
    }

    /// Checks `--conns`: at least 1, and below 2^31 (a connection's number
    /// shares an SQE's `user_data` with a tag bit).
    pub fn check_conns(conns: usize) -> Result<(), String> {
        if conns == 0 || conns > (u32::MAX >> 1) as usize {
            return Err("--conns must be at least 1 (and fewer than 2^31)".into());
        }
        Ok(())
    }

    /// Checks, in this order, that `--secs` is positive, `--warmup` zero or
    /// positive and `--rate` positive (all finite).
    pub fn check_times(secs: f64, warmup: f64, rate: Option<f64>) -> Result<(), String> {
        if !(secs > 0.0 && secs.is_finite()) {
            return Err("--secs must be positive".into());
        }
        if !(warmup >= 0.0 && warmup.is_finite()) {
            return Err("--warmup must be zero or positive".into());
        }
        if let Some(r) = rate {
            if !(r > 0.0 && r.is_finite()) {
                return Err("--rate must be positive".into());
            }
        }
        Ok(())
    }
}

/// The message for a bad `value` of `flag`, `e` saying why.
pub fn bad_value(flag: &str, value: &str, e: &dyn Display) -> String {
    format!("bad value {value:?} for {flag}: {e}")
}

/// `value` of `flag` parsed as a `T`, or the message saying it is bad.
pub fn parse_value<T: FromStr>(flag: &str, value: &str) -> Result<T, String>
where
    T::Err: Display,
{
    value.parse().map_err(|e| bad_value(flag, value, &e))
}

/// Prints a `MARK <what>` line and flushes it, if marks are on.
pub fn mark(on: bool, what: &str) {
    if on {
        use std::io::Write as _;
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "MARK {what}");
        let _ = out.flush();
    }
}

/// Opens `plan.conns` connections to `plan.addr` up front (blocking
/// `connect` with a 5 s timeout, `TCP_NODELAY`; the descriptor limit raised
/// first), `conn(number, socket)` making each one's [`Conn`]; then plays
/// their exchanges through the warm-up and the measured window, and shuts
/// them down.
pub fn run<E: Exchange>(
    plan: &Plan,
    mut conn: impl FnMut(usize, OwnedFd) -> Conn<E>,
) -> io::Result<Report> {
    // Not fatal: `connect` reports running out of descriptors clearly enough.
    let _ = crate::raise_nofile_limit();
    let mut conns = Vec::with_capacity(plan.conns);
    for id in 0..plan.conns {
        let stream =
            TcpStream::connect_timeout(&plan.addr, Duration::from_secs(5)).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("connection {id} of {} to {}: {e}", plan.conns, plan.addr),
                )
            })?;
        stream.set_nodelay(true)?;
        conns.push(conn(id, OwnedFd::from(stream)));
    }
    mark(plan.marks, "connected");
    let mut client = Client::new(plan, conns)?;
    let result = client.run(
        Duration::from_secs_f64(plan.warmup),
        Duration::from_secs_f64(plan.secs),
    );
    if plan.marks {
        // Leave the runner time to sample the server after `MARK end`,
        // before the connections close (closing them costs it CPU).
        std::thread::sleep(Duration::from_millis(150));
    }
    client.shut_down();
    result
}

/// The event loop and its counters.
struct Client<E> {
    name: &'static str,
    ring: IoUring,
    conns: Vec<Conn<E>>,
    /// Interval between two scheduled requests, in fixed-rate mode.
    interval: Option<Duration>,
    /// Connections waiting for their slot of the schedule (fixed rate).
    idle: VecDeque<u32>,
    /// Connections whose request was queued this iteration and gets its
    /// start time just before the SQEs go to the kernel (closed loop).
    to_stamp: Vec<u32>,
    /// Completions copied out of the CQ, so handlers can queue SQEs.
    cqes: Vec<(u64, i32)>,
    /// SQEs pushed whose CQE has not been seen.
    inflight: usize,
    alive: usize,
    exchanges: u64,
    errors: u64,
    hist: Histogram,
    /// Print `MARK window` / `MARK end`.
    marks: bool,
}

impl<E: Exchange> Client<E> {
    fn new(plan: &Plan, conns: Vec<Conn<E>>) -> io::Result<Client<E>> {
        let n = conns.len();
        // At most two operations per connection are in flight.
        let sq = (2 * n).next_power_of_two().clamp(64, 32768) as u32;
        let cq = (2 * n).next_power_of_two().clamp(2 * sq as usize, 65536) as u32;
        let ring = crate::uring::ring(sq, cq)?;
        let idle = if plan.interval.is_some() {
            (0..n as u32).collect()
        } else {
            VecDeque::new()
        };
        Ok(Client {
            name: plan.name,
            ring,
            interval: plan.interval,
            idle,
            to_stamp: Vec::with_capacity(n),
            cqes: Vec::with_capacity(cq as usize),
            inflight: 0,
            alive: n,
            exchanges: 0,
            errors: 0,
            hist: Histogram::new(),
            marks: plan.marks,
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
                self.start(i, None)?;
            }
        }
        let stop = loop {
            let now = Instant::now();
            if window.is_none() && now >= warm_end {
                // The measured window begins: reset what it measures.
                self.exchanges = 0;
                self.hist.clear();
                window = Some((now, crate::cpu_secs(libc::RUSAGE_SELF)));
                end = now + secs;
                mark(self.marks, "window");
            }
            if (window.is_some() && now >= end) || self.alive == 0 {
                break now;
            }
            if let Some(interval) = self.interval {
                while next_slot <= now {
                    let Some(i) = self.idle.pop_front() else {
                        break;
                    };
                    self.start(i as usize, Some(next_slot))?;
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
        let cpu = crate::cpu_secs(libc::RUSAGE_SELF) - cpu_start;
        mark(self.marks, "end");
        Ok(Report {
            exchanges: self.exchanges,
            secs,
            p50_us: self.hist.quantile(0.50) / 1000.0,
            p99_us: self.hist.quantile(0.99) / 1000.0,
            p999_us: self.hist.quantile(0.999) / 1000.0,
            client_cpu: cpu / secs,
            errors: self.errors,
            alive: self.alive,
        })
    }

    /// Starts connection `i`'s next exchange: its send and a receive,
    /// queued together. `start` is its scheduled time at a fixed rate;
    /// otherwise the time it goes to the kernel is taken later.
    fn start(&mut self, i: usize, start: Option<Instant>) -> io::Result<()> {
        let c = &mut self.conns[i];
        c.send_len = c.exchange.next(&mut c.send_buf);
        c.sent = 0;
        c.recvd = 0;
        c.replied = false;
        match start {
            Some(t) => c.start = t,
            None => self.to_stamp.push(i as u32),
        }
        self.queue_send(i)?;
        self.queue_recv(i, true)
    }

    fn queue_send(&mut self, i: usize) -> io::Result<()> {
        let c = &mut self.conns[i];
        let rest = &c.send_buf[c.sent..c.send_len];
        let sqe = opcode::Send::new(types::Fd(c.raw()), rest.as_ptr(), rest.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data((i as u64) << 1);
        c.send_busy = true;
        self.push(sqe)
    }

    fn queue_recv(&mut self, i: usize, poll_first: bool) -> io::Result<()> {
        let c = &mut self.conns[i];
        let fd = c.raw();
        let rest = &mut c.recv_buf[c.recvd..];
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
        unsafe { crate::uring::push(&mut self.ring, &sqe) }?;
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
            match c.exchange.received(&c.recv_buf, c.recvd) {
                Err(why) => {
                    self.fail(i, &why);
                    return Ok(());
                }
                Ok(false) => return self.queue_recv(i, false),
                Ok(true) => c.replied = true,
            }
        } else {
            if n == 0 {
                self.fail(i, "send wrote nothing");
                return Ok(());
            }
            c.sent += n;
            if c.sent < c.send_len {
                return self.queue_send(i);
            }
        }
        if c.sent < c.send_len || !c.replied || c.send_busy || c.recv_busy {
            return Ok(());
        }
        // The request is sent and every reply is in.
        match c.exchange.finish(&c.send_buf, &c.recv_buf) {
            Ok(()) => {
                self.exchanges += 1;
                self.hist.record(now.saturating_duration_since(c.start));
            }
            Err(why) => {
                self.errors += 1;
                if self.errors <= MAX_LOGGED {
                    eprintln!("{}: connection {i}: {why}", self.name);
                }
            }
        }
        if self.interval.is_some() {
            self.idle.push_back(i as u32);
            Ok(())
        } else {
            self.start(i, None)
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
            eprintln!("{}: connection {i}: {why}", self.name);
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
                "{}: {} operations still in flight at exit; leaking their buffers",
                self.name, self.inflight
            );
            std::mem::forget(std::mem::take(&mut self.conns));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A server on a thread that accepts `conns` connections and, on each,
    /// echoes what comes (`close`: closes it at once instead).
    fn server(conns: usize, close: bool) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for _ in 0..conns {
                let (mut s, _) = listener.accept().unwrap();
                if close {
                    continue;
                }
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = s.read(&mut buf) {
                        if s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    /// Sends its counter as 8 bytes and expects them back; with `bad`,
    /// every third exchange is called wrong.
    struct Counter {
        n: u64,
        bad: bool,
    }

    impl Exchange for Counter {
        fn next(&mut self, send: &mut [u8]) -> usize {
            send[..8].copy_from_slice(&self.n.to_le_bytes());
            8
        }
        fn received(&mut self, recv: &[u8], filled: usize) -> Result<bool, String> {
            assert_eq!(recv.len(), 16, "the whole buffer");
            Ok(filled >= 8)
        }
        fn finish(&mut self, send: &[u8], recv: &[u8]) -> Result<(), String> {
            self.n += 1;
            if recv[..8] != send[..8] {
                return Err("a wrong echo".into());
            }
            if self.bad && self.n % 3 == 0 {
                return Err(format!("exchange {} called wrong", self.n));
            }
            Ok(())
        }
    }

    fn plan(addr: SocketAddr, interval: Option<Duration>) -> Plan {
        Plan {
            name: "client-test",
            addr,
            conns: 3,
            interval,
            warmup: 0.05,
            secs: 0.3,
            marks: false,
        }
    }

    fn conn(fd: OwnedFd, bad: bool) -> Conn<Counter> {
        let buf = || vec![0u8; 16].into_boxed_slice();
        Conn::new(fd, Counter { n: 0, bad }, buf(), buf())
    }

    #[test]
    fn closed_loop_and_fixed_rate_exchanges_are_counted() {
        let r = run(&plan(server(3, false), None), |_, fd| conn(fd, false)).unwrap();
        assert!(r.exchanges > 0, "{r:?}");
        assert_eq!((r.errors, r.alive), (0, 3), "{r:?}");
        assert!(
            r.secs > 0.0 && r.p50_us > 0.0 && r.p50_us <= r.p999_us,
            "{r:?}"
        );
        let every = Some(Duration::from_millis(1));
        let r = run(&plan(server(3, false), every), |_, fd| conn(fd, false)).unwrap();
        assert!(r.exchanges > 0, "{r:?}");
        assert_eq!((r.errors, r.alive), (0, 3), "{r:?}");
    }

    #[test]
    fn wrong_exchanges_are_errors_and_closed_connections_fail() {
        let r = run(&plan(server(3, false), None), |_, fd| conn(fd, true)).unwrap();
        assert!(r.errors > 0 && r.exchanges > 0, "{r:?}");
        assert_eq!(r.alive, 3, "a wrong exchange does not end its connection");
        let r = run(&plan(server(3, true), None), |_, fd| conn(fd, false)).unwrap();
        assert_eq!((r.exchanges, r.errors, r.alive), (0, 3, 0), "{r:?}");
    }

    #[test]
    fn a_refused_connection_is_an_error_naming_it() {
        // Nothing listens on port 1 (privileged, unassigned).
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let e = run(&plan(addr, None), |_, fd| conn(fd, false)).unwrap_err();
        assert!(e.to_string().starts_with("connection 0 of 3 to "), "{e}");
    }

    #[test]
    fn flags_common_and_own() {
        let args = |v: &[&str]| {
            v.iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .into_iter()
        };
        let mut size = None;
        let f = Flags::parse(
            args(&[
                "--addr",
                "127.0.0.1:9",
                "--conns",
                "4",
                "--size",
                "8",
                "--marks",
            ]),
            |flag, value| match flag {
                "--size" => {
                    size = Some(parse_value::<usize>(flag, value)?);
                    Ok(true)
                }
                _ => Ok(false),
            },
        )
        .unwrap();
        assert_eq!(f.addr, Some("127.0.0.1:9".parse().unwrap()));
        assert_eq!(
            (f.conns, f.secs, f.warmup, f.rate, f.marks),
            (Some(4), None, 1.0, None, true)
        );
        assert_eq!(size, Some(8));
        let err = |v: &[&str]| Flags::parse(args(v), |_, _| Ok(false)).unwrap_err();
        assert_eq!(err(&["--size", "8"]), "unknown flag \"--size\"");
        assert_eq!(err(&["--secs"]), "--secs needs a value");
        assert_eq!(
            err(&["--rate", "x"]),
            "bad value \"x\" for --rate: invalid float literal"
        );
        assert!(err(&["--addr", "127.0.0.1"]).starts_with("bad value \"127.0.0.1\" for --addr"));
        assert!(Flags::check_conns(1).is_ok() && Flags::check_conns(0).is_err());
        assert!(Flags::check_conns(1 << 31).is_err());
        assert!(Flags::check_times(1.0, 0.0, Some(5.0)).is_ok());
        assert_eq!(
            Flags::check_times(0.0, -1.0, None).unwrap_err(),
            "--secs must be positive"
        );
        assert_eq!(
            Flags::check_times(1.0, f64::NAN, None).unwrap_err(),
            "--warmup must be zero or positive"
        );
        assert_eq!(
            Flags::check_times(1.0, 0.0, Some(0.0)).unwrap_err(),
            "--rate must be positive"
        );
        assert_eq!(
            bad_value("--f", "v", &"why"),
            "bad value \"v\" for --f: why"
        );
    }
}
