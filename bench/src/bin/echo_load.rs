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

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::process::ExitCode;
use std::time::Duration;

use bench::client::{self, parse_value, Conn, Exchange, Flags, Plan, Report};

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
                report.exchanges,
                report.secs,
                report.exchanges as f64 / report.secs,
                report.p50_us,
                report.p99_us,
                report.p999_us,
                report.client_cpu,
                report.errors
            );
            if report.alive == 0 {
                eprintln!("echo_load: every connection failed");
                ExitCode::FAILURE
            } else if report.exchanges == 0 {
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

impl Args {
    fn parse(it: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut size = None;
        let f = Flags::parse(it, |flag, value| {
            match flag {
                "--size" => size = Some(parse_value::<usize>(flag, value)?),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        let args = Args {
            addr: f.addr.ok_or("--addr is required")?,
            conns: f.conns.ok_or("--conns is required")?,
            size: size.ok_or("--size is required")?,
            secs: f.secs.ok_or("--secs is required")?,
            warmup: f.warmup,
            rate: f.rate,
            marks: f.marks,
        };
        Flags::check_conns(args.conns)?;
        if args.size == 0 || args.size > u32::MAX as usize {
            return Err("--size must be between 1 and 2^32-1".into());
        }
        Flags::check_times(args.secs, args.warmup, args.rate)?;
        Ok(args)
    }
}

fn run(args: &Args) -> io::Result<Report> {
    let plan = Plan {
        name: "echo_load",
        addr: args.addr,
        conns: args.conns,
        interval: args.rate.map(|r| Duration::from_secs_f64(1.0 / r)),
        warmup: args.warmup,
        secs: args.secs,
        marks: args.marks,
    };
    let size = args.size;
    client::run(&plan, |id, fd| echo_conn(fd, id as u32, size))
}

/// Connection `id`'s [`Conn`]: its two message buffers of `size` bytes,
/// the one to send filled with the connection's pattern.
fn echo_conn(fd: OwnedFd, id: u32, size: usize) -> Conn<Echo> {
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
    let recv_buf = vec![0u8; size].into_boxed_slice();
    Conn::new(fd, Echo { counter: 0 }, send_buf, recv_buf)
}

/// The message of a connection: the counter (little-endian, first 8
/// bytes), the connection's number (next 4), then a per-connection
/// pattern; its echo must be the same bytes.
struct Echo {
    /// Number of the current message.
    counter: u64,
}

impl Exchange for Echo {
    fn next(&mut self, send: &mut [u8]) -> usize {
        let counter = self.counter.to_le_bytes();
        for (dst, src) in send.iter_mut().zip(counter) {
            *dst = src;
        }
        send.len()
    }

    fn received(&mut self, recv: &[u8], filled: usize) -> Result<bool, String> {
        Ok(filled == recv.len())
    }

    fn finish(&mut self, send: &[u8], recv: &[u8]) -> Result<(), String> {
        let counter = self.counter;
        self.counter += 1;
        if recv == send {
            Ok(())
        } else {
            Err(format!("message {counter} came back wrong"))
        }
    }
}
