//! Bulk sends over loopback TCP (issue 7, the `uring` scenario's SEND_ZC
//! and send-bundle cells): a copying `write_all`, a zero-copy
//! `write_all_zc` (`IORING_OP_SEND_ZC`), `send_zc_fixed` (SEND_ZC from a
//! registered buffer, `runtime::fixed::FixedBufPool`), and a
//! `net::SendQueue` filled with 1 KiB pieces and flushed every `S` bytes,
//! either through its fallback (`queue_sendmsg`: one `IORING_OP_SENDMSG`
//! gathering the pieces) or with send bundles (`queue_bundle`: one
//! bundled `IORING_OP_SEND` taking them from a buffer ring).
//!
//! ```text
//! send_bench reader <addr>
//! send_bench send --addr A --way <write_all|write_all_zc|send_zc_fixed|queue_sendmsg|queue_bundle> --size S --bytes N
//! ```
//!
//! `reader` is the receiving side, a plain std program: it listens on
//! `<addr>` (`SO_REUSEADDR`, backlog 4096) and serves one connection at a
//! time with blocking `read`s into a 1 MiB buffer, counting the bytes until
//! the peer shuts its side down; it then writes the count back (8 bytes,
//! little-endian) and closes. It runs until killed and prints nothing on
//! stdout.
//!
//! `send` runs on our runtime: it connects to `A`, sends `N` bytes in
//! writes of `S` bytes (one write in flight at a time, the same buffer
//! reused), shuts its side down and waits for the reader's count, which
//! must be `N`. The time runs from the first write to the count's arrival,
//! so it covers every byte being read. It prints
//!
//! ```text
//! RESULT bench=send way=<way> size=<S> bytes=<N> secs=<s> mbps=<10^6 bytes/s> sender_cpu=<CPU seconds>
//! ```
//!
//! `sender_cpu` is this process's user + system time over that window
//! (`getrusage`, every thread, io_uring workers included). On loopback the
//! receive-side work (the copy into the reader's socket buffer) is done
//! partly on the sender's core, so compare the sum of both sides' CPU. A
//! way that cannot run here prints `RESULT ... skipped=1` and exits 0.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::process::ExitCode;
use std::time::Instant;

const USAGE: &str = "usage: send_bench reader <addr>
       send_bench send --addr A --way <write_all|write_all_zc|send_zc_fixed|queue_sendmsg|queue_bundle> --size S --bytes N";

/// The ways of sending.
const WAYS: [&str; 5] = [
    "write_all",
    "write_all_zc",
    "send_zc_fixed",
    "queue_sendmsg",
    "queue_bundle",
];

/// The piece size of the `queue_*` ways.
const PIECE: usize = 1024;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let res = match args.first().map(String::as_str) {
        Some("reader") if args.len() == 2 => reader(&args[1]),
        Some("send") => send(&args[1..]),
        _ => Err("missing or unknown mode".to_string()),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("send_bench: {e}\n{USAGE}");
            ExitCode::FAILURE
        }
    }
}

/// The receiving side: serves connections one at a time until killed.
fn reader(addr: &str) -> Result<(), String> {
    let _ = bench::raise_nofile_limit();
    let listener = bench::listen(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let (mut conn, _) = match listener.accept() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("send_bench reader: accept failed: {e}");
                continue;
            }
        };
        let mut total: u64 = 0;
        let done = loop {
            match conn.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => total += n as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        match done {
            // The suite's readiness probe connects and closes at once:
            // writing to it may fail, which does not matter.
            Ok(()) => {
                let _ = conn.write_all(&total.to_le_bytes());
            }
            Err(e) => eprintln!("send_bench reader: read failed after {total} bytes: {e}"),
        }
    }
}

/// The command line of `send`.
struct SendArgs {
    addr: SocketAddr,
    way: String,
    size: usize,
    bytes: u64,
}

fn parse_send(args: &[String]) -> Result<SendArgs, String> {
    let (mut addr, mut way, mut size, mut bytes) = (None, None, None, None);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("bad value {value:?} for {flag}: {e}");
        match flag.as_str() {
            "--addr" => addr = Some(value.parse::<SocketAddr>().map_err(|e| bad(&e))?),
            "--way" => {
                if !WAYS.contains(&value.as_str()) {
                    return Err(format!(
                        "unknown way {value:?} (known: {})",
                        WAYS.join(", ")
                    ));
                }
                way = Some(value.clone());
            }
            "--size" => size = Some(value.parse::<usize>().map_err(|e| bad(&e))?),
            "--bytes" => bytes = Some(value.parse::<u64>().map_err(|e| bad(&e))?),
            other => return Err(format!("unknown flag {other:?}")),
        }
    }
    let a = SendArgs {
        addr: addr.ok_or("--addr is required")?,
        way: way.ok_or("--way is required")?,
        size: size.ok_or("--size is required")?,
        bytes: bytes.ok_or("--bytes is required")?,
    };
    if a.size == 0 || a.size > 1 << 30 {
        return Err("--size must be between 1 and 1 GiB".into());
    }
    if a.bytes == 0 {
        return Err("--bytes must be positive".into());
    }
    Ok(a)
}

/// Why a way could not run here (it is then reported as skipped).
enum Failure {
    Skipped(String),
    Error(String),
}

impl From<String> for Failure {
    fn from(s: String) -> Failure {
        Failure::Error(s)
    }
}

fn send(args: &[String]) -> Result<(), String> {
    let a = parse_send(args)?;
    let rt = runtime::Runtime::new().map_err(|e| format!("cannot start the runtime: {e}"))?;
    let outcome = rt.block_on(async {
        let stream = net::TcpStream::connect(a.addr)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", a.addr))?;
        let start = Instant::now();
        let cpu0 = bench::cpu_secs(libc::RUSAGE_SELF);
        match a.way.as_str() {
            "write_all" | "write_all_zc" => {
                let zc = a.way == "write_all_zc";
                let write = async |mut b: Vec<u8>, n| {
                    b.truncate(n);
                    let (res, b) = if zc {
                        stream.write_all_zc(b).await
                    } else {
                        stream.write_all(b).await
                    };
                    (res.map(|()| n), b)
                };
                send_loop(pattern(a.size), a.bytes, &a.way, write).await?
            }
            "queue_sendmsg" => send_queue(&stream, a.size, a.bytes, false).await?,
            "queue_bundle" => send_queue(&stream, a.size, a.bytes, true).await?,
            _ => send_zc_fixed(&stream, a.size, a.bytes).await?,
        }
        stream
            .shutdown(Shutdown::Write)
            .map_err(|e| format!("shutdown: {e}"))?;
        let (res, count) = stream.read_exact(Vec::with_capacity(8)).await;
        res.map_err(|e| format!("reading the reader's count: {e}"))?;
        let secs = start.elapsed().as_secs_f64();
        let cpu = bench::cpu_secs(libc::RUSAGE_SELF) - cpu0;
        let mut le = [0u8; 8];
        le.copy_from_slice(&count[..8]);
        let got = u64::from_le_bytes(le);
        if got != a.bytes {
            return Err(Failure::Error(format!(
                "the reader counted {got} bytes, not {}",
                a.bytes
            )));
        }
        Ok::<(f64, f64), Failure>((secs, cpu))
    });
    match outcome {
        Ok((secs, cpu)) => {
            println!(
                "RESULT bench=send way={} size={} bytes={} secs={secs:.6} mbps={:.1} sender_cpu={cpu:.4}",
                a.way,
                a.size,
                a.bytes,
                a.bytes as f64 / secs / 1e6
            );
            Ok(())
        }
        Err(Failure::Skipped(why)) => {
            eprintln!("send_bench: {} skipped: {why}", a.way);
            println!(
                "RESULT bench=send way={} size={} bytes={} skipped=1",
                a.way, a.size, a.bytes
            );
            Ok(())
        }
        Err(Failure::Error(e)) => Err(e),
    }
}

/// A buffer of `size` bytes of a fixed pattern.
fn pattern(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8).collect()
}

/// Sends `buf` with `send` (one send in flight, the same buffer reused)
/// until `total` bytes went out: `send(buf, n)` sends the first `n` bytes
/// (`n` is less than the whole buffer only for the last send) and returns
/// how many went out: all of them for the `write_all` ways; after a short
/// `send_zc_fixed` the next send is the whole buffer again (the reader
/// counts bytes only).
async fn send_loop<B: AsRef<[u8]>>(
    mut buf: B,
    total: u64,
    way: &str,
    send: impl AsyncFn(B, usize) -> (std::io::Result<usize>, B),
) -> Result<(), Failure> {
    let mut sent = 0u64;
    while sent < total {
        let n = (total - sent).min(buf.as_ref().len() as u64) as usize;
        let (res, b) = send(buf, n).await;
        let n = res.map_err(|e| format!("{way} after {sent} bytes: {e}"))?;
        if n == 0 {
            return Err(Failure::Error(format!(
                "{way} sent nothing after {sent} bytes"
            )));
        }
        buf = b;
        sent += n as u64;
    }
    Ok(())
}

/// A `SendQueue` flushed every `size` bytes, filled with 1 KiB pieces
/// (fresh `Vec`s, as an application queueing messages would make them):
/// with send bundles (one `IORING_OP_SEND` bundle per flush) or with its
/// fallback (one `IORING_OP_SENDMSG` gathering the pieces).
async fn send_queue(
    stream: &net::TcpStream,
    size: usize,
    total: u64,
    bundles: bool,
) -> Result<(), Failure> {
    let pieces = size.div_ceil(PIECE);
    let entries = (pieces.next_power_of_two()).clamp(1, 32768) as u16;
    let mut queue = stream
        .send_queue(entries)
        .map_err(|e| format!("send_queue({entries}): {e}"))?
        .bundles(bundles);
    if bundles && !queue.uses_bundles() {
        return Err(Failure::Skipped(
            "the kernel has no send bundles".to_string(),
        ));
    }
    let piece = pattern(PIECE);
    let mut sent = 0u64;
    while sent < total {
        let batch = (total - sent).min(size as u64);
        let mut left = batch as usize;
        while left > 0 {
            let n = left.min(PIECE);
            if queue.push(piece[..n].to_vec()).is_err() {
                return Err(Failure::Error("the send queue is full".to_string()));
            }
            left -= n;
        }
        let n = queue
            .flush()
            .await
            .map_err(|e| format!("flush after {sent} bytes: {e}"))?;
        sent += n as u64;
    }
    Ok(())
}

/// `send_zc_fixed` from one registered buffer of `size` bytes, re-sent
/// until `total` bytes went out (a short send counts what it sent; the
/// next send is a whole buffer again: the reader counts bytes only).
async fn send_zc_fixed(stream: &net::TcpStream, size: usize, total: u64) -> Result<(), Failure> {
    let pool = runtime::fixed::FixedBufPool::new(1, size)
        .map_err(|e| Failure::Skipped(format!("FixedBufPool::new(1, {size}): {e}")))?;
    if !pool.is_registered() {
        return Err(Failure::Skipped(
            "the buffer could not be registered (RLIMIT_MEMLOCK?)".to_string(),
        ));
    }
    let mut full = pool.get().await;
    full.clear();
    full.extend_from_slice(&pattern(size));
    let send = async |mut b: runtime::fixed::FixedBuf, n| {
        b.truncate(n);
        stream.send_zc_fixed(b).await
    };
    send_loop(full, total, "send_zc_fixed", send).await
}
