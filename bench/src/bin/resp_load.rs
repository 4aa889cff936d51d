//! The load generator of the key-value scenario: RESP commands at a fixed
//! rate (or as fast as the server answers), with pipelining, every reply
//! parsed and checked.
//!
//! ```text
//! resp_load --addr A --conns N --secs S [--pipeline P] [--rate R] [--warmup W]
//!           [--mix ping,set,get] [--keyspace K] [--value-size V] [--marks]
//! ```
//!
//! Opens `N` connections to `A` up front (blocking `connect`,
//! `TCP_NODELAY`). Each connection sends a batch of `P` commands (default 1)
//! in one `send`, then waits until all `P` replies are in before it sends
//! its next batch (redis-benchmark's `-P`). The commands cycle through the
//! mix (default `ping,set,get`: `PING`, `SET key value`, `GET key`, as
//! redis-benchmark's `-t ping,set,get` does one after the other), all sent
//! as arrays of bulk strings. The keys are `key:` and 12 digits, like
//! redis-benchmark's `key:__rand_int__`: `K` keys in all (default 10,000),
//! split between the connections, each connection drawing from its own
//! share at random (xorshift). Values are `V` bytes (default 32): the key's
//! number, a per-connection counter of `SET`s, and padding.
//!
//! # Every reply is checked
//!
//! Replies are parsed as RESP (simple string, error, integer, bulk string;
//! an array is wrong here) and must be, in order: `+PONG` for `PING`, `+OK`
//! for `SET`, and for `GET` the value this connection last `SET` on that
//! key. Because a connection owns its keys and its commands run in order,
//! it knows exactly what each `GET` must return, also within one pipelined
//! batch. A key this run has not yet set may hold a value from an earlier
//! run against the same server: until the first `SET`, a `GET` must return
//! nil or a value of the right size that names that key. Anything else (a
//! wrong value, an error reply, a missing or extra byte, the server
//! closing) counts as an error and ends that connection; the program then
//! exits non-zero after printing its result.
//!
//! # The schedule and the latency
//!
//! As `echo_load`: without `--rate` every connection sends its next batch
//! as soon as the last one is answered (closed loop). With `--rate R`
//! (commands per second, across all connections) the load is open-loop:
//! batches of `P` are due every `P / R` seconds, and an idle connection
//! sends when the next slot has come. If no connection is idle when a slot
//! comes, the slot waits for one, and the latency is still measured from
//! the **scheduled** time, so a slow server is charged for the queueing it
//! causes (no coordinated omission). The latency of a batch runs from then
//! (or, closed loop, from when it went to the kernel) to the receipt of
//! its last reply; every command of the batch has that latency. It goes
//! into a log-linear histogram (within 1.6%).
//!
//! The first `W` seconds (default 1) are a warm-up; then the counts and the
//! histogram are reset and the measured window of `S` seconds begins
//! (errors are counted over the whole run).
//!
//! Output, on stdout:
//!
//! ```text
//! RESULT cmds=<count> batches=<count> secs=<window> rate=<cmds per second> p50_us=<f> p99_us=<f> p999_us=<f> client_cpu=<f> errors=<count>
//! ```
//!
//! `client_cpu` is this process's CPU time (user + system, `getrusage`)
//! over the window divided by its wall time: near 1.0 the client was the
//! limit, not the server. With `--marks` it also prints `MARK connected`,
//! `MARK window` and `MARK end` (each flushed at once) so that a runner can
//! sample the server's CPU time over exactly the measured window; the
//! connections then stay open, quiet, for 150 ms more.
//!
//! # Why the client stays cheap
//!
//! As `echo_load`, whose client loop (`bench::client`) it shares: one
//! thread, one io_uring ring (single issuer, deferred task work), no
//! runtime, no allocation after the start. A batch costs two SQEs (its
//! send, and a receive queued with it that polls first), two CQEs when the
//! replies come in one piece, the encoding of `P` commands into a buffer
//! and the parse of `P` replies; every SQE of a loop iteration goes to the
//! kernel in the one `io_uring_enter` that also waits for the next
//! completions.

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use bench::client::{self, bad_value, parse_value, Conn, Exchange, Flags, Plan, Report};

/// Digits of a key's number: `key:` and 12 digits, 16 bytes.
const KEY_DIGITS: usize = 12;
/// Length of a key.
const KEY_LEN: usize = 4 + KEY_DIGITS;
/// The shortest value: the key's number, `:`, the counter in 16 hex digits.
const MIN_VALUE: usize = KEY_DIGITS + 1 + 16;
/// The largest value accepted.
const MAX_VALUE: usize = 1 << 20;
/// The largest pipeline accepted.
const MAX_PIPELINE: usize = 4096;

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("resp_load: {e}");
            eprintln!(
                "usage: resp_load --addr A --conns N --secs S [--pipeline P] [--rate R] [--warmup W] [--mix ping,set,get] [--keyspace K] [--value-size V] [--marks]"
            );
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(r) => {
            let cmds = r.exchanges * args.pipeline as u64;
            println!(
                "RESULT cmds={} batches={} secs={:.4} rate={:.0} p50_us={:.1} p99_us={:.1} p999_us={:.1} client_cpu={:.3} errors={}",
                cmds,
                r.exchanges,
                r.secs,
                cmds as f64 / r.secs,
                r.p50_us,
                r.p99_us,
                r.p999_us,
                r.client_cpu,
                r.errors
            );
            if r.errors > 0 {
                eprintln!("resp_load: {} errors", r.errors);
                ExitCode::FAILURE
            } else if cmds == 0 {
                eprintln!("resp_load: no command was answered in the measured window");
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("resp_load: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A command of the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Ping,
    Set,
    Get,
}

/// The command line.
struct Args {
    addr: SocketAddr,
    conns: usize,
    pipeline: usize,
    secs: f64,
    warmup: f64,
    rate: Option<f64>,
    mix: Vec<Cmd>,
    keyspace: usize,
    value_size: usize,
    marks: bool,
}

impl Args {
    fn parse(it: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut pipeline = 1;
        let (mut mix, mut keyspace, mut value_size) =
            (vec![Cmd::Ping, Cmd::Set, Cmd::Get], 10_000, 32);
        let f = Flags::parse(it, |flag, value| {
            match flag {
                "--pipeline" => pipeline = parse_value(flag, value)?,
                "--keyspace" => keyspace = parse_value(flag, value)?,
                "--value-size" => value_size = parse_value(flag, value)?,
                "--mix" => {
                    mix = value
                        .split(',')
                        .map(|c| match c.trim().to_ascii_lowercase().as_str() {
                            "ping" => Ok(Cmd::Ping),
                            "set" => Ok(Cmd::Set),
                            "get" => Ok(Cmd::Get),
                            other => Err(bad_value(
                                flag,
                                value,
                                &format!("unknown command {other:?}"),
                            )),
                        })
                        .collect::<Result<_, _>>()?;
                }
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        let args = Args {
            addr: f.addr.ok_or("--addr is required")?,
            conns: f.conns.ok_or("--conns is required")?,
            secs: f.secs.ok_or("--secs is required")?,
            pipeline,
            warmup: f.warmup,
            rate: f.rate,
            mix,
            keyspace,
            value_size,
            marks: f.marks,
        };
        Flags::check_conns(args.conns)?;
        if !(1..=MAX_PIPELINE).contains(&args.pipeline) {
            return Err(format!("--pipeline must be between 1 and {MAX_PIPELINE}"));
        }
        Flags::check_times(args.secs, args.warmup, args.rate)?;
        if args.keyspace < args.conns || args.keyspace >= 10usize.pow(KEY_DIGITS as u32) {
            return Err(format!(
                "--keyspace must be at least --conns (every connection owns keys) and below 10^{KEY_DIGITS}"
            ));
        }
        if !(MIN_VALUE..=MAX_VALUE).contains(&args.value_size) {
            return Err(format!(
                "--value-size must be between {MIN_VALUE} and {MAX_VALUE}"
            ));
        }
        Ok(args)
    }
}

fn run(args: &Args) -> io::Result<Report> {
    let proto = Protocol::new(args);
    let per_conn = args.keyspace / args.conns;
    let plan = Plan {
        name: "resp_load",
        addr: args.addr,
        conns: args.conns,
        interval: args
            .rate
            .map(|r| Duration::from_secs_f64(proto.pipeline as f64 / r)),
        warmup: args.warmup,
        secs: args.secs,
        marks: args.marks,
    };
    client::run(&plan, |id, fd| {
        let first_key = (id * per_conn) as u64;
        let send_buf = vec![0u8; proto.max_batch].into_boxed_slice();
        let recv_buf = vec![0u8; proto.max_replies].into_boxed_slice();
        Conn::new(
            fd,
            Batches::new(id, first_key, per_conn, &proto),
            send_buf,
            recv_buf,
        )
    })
}

/// The encoding of the commands and of the replies expected.
struct Protocol {
    pipeline: usize,
    mix: Vec<Cmd>,
    value_size: usize,
    /// `$<value size>\r\n`: the header of a value, in a `SET` and in a
    /// `GET`'s reply.
    value_header: Vec<u8>,
    /// The most bytes a batch of commands takes.
    max_batch: usize,
    /// The most bytes the replies to a batch take, plus room to see
    /// what a wrong reply is.
    max_replies: usize,
}

impl Protocol {
    fn new(args: &Args) -> Protocol {
        let value_header = format!("${}\r\n", args.value_size).into_bytes();
        let set_len = b"*3\r\n$3\r\nSET\r\n$16\r\n".len()
            + KEY_LEN
            + 2
            + value_header.len()
            + args.value_size
            + 2;
        let max_batch = args.pipeline * set_len;
        let max_reply = value_header.len() + args.value_size + 2;
        Protocol {
            pipeline: args.pipeline,
            mix: args.mix.clone(),
            value_size: args.value_size,
            value_header,
            max_batch,
            max_replies: args.pipeline * max_reply.max(8) + 4096,
        }
    }
}

/// What a command's reply must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// `+PONG`.
    Pong,
    /// `+OK`.
    Ok,
    /// A `GET` of key number `key` (global), last set by this connection's
    /// `SET` number `counter`, or not yet set by this run (`counter` 0).
    Value { key: u64, counter: u64 },
}

/// One connection's part of the protocol: its keys, the replies the batch
/// in flight must get (the buffers are its [`Conn`]'s).
struct Batches<'p> {
    proto: &'p Protocol,
    /// Bytes of the batch's replies parsed so far.
    parsed: usize,
    /// The replies the batch must get, in order, and how many came.
    expect: Vec<Expect>,
    answered: usize,
    /// The first of this connection's keys (a global number) and how many.
    first_key: u64,
    keys: usize,
    /// Per key of this connection: the number of the last `SET` of it
    /// (0: not set by this run).
    last_set: Vec<u64>,
    /// `SET`s sent so far.
    sets: u64,
    /// Position in the mix.
    mix_pos: usize,
    /// xorshift64 state for choosing keys.
    rng: u64,
}

impl<'p> Batches<'p> {
    fn new(id: usize, first_key: u64, keys: usize, p: &'p Protocol) -> Batches<'p> {
        Batches {
            proto: p,
            parsed: 0,
            expect: Vec::with_capacity(p.pipeline),
            answered: 0,
            first_key,
            keys,
            last_set: vec![0; keys],
            sets: 0,
            mix_pos: id,
            // Any non-zero seed; distinct per connection.
            rng: 0x9e37_79b9_7f4a_7c15 ^ ((id as u64 + 1) << 17),
        }
    }

    /// The next key of this connection: (index among its keys, global
    /// number).
    fn next_key(&mut self) -> (usize, u64) {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        let i = (x % self.keys as u64) as usize;
        (i, self.first_key + i as u64)
    }

    /// Encodes the next batch of `p.pipeline` commands into `buf`, notes
    /// the replies it must get and returns its length.
    fn build_batch(&mut self, p: &Protocol, buf: &mut [u8]) -> usize {
        self.expect.clear();
        self.answered = 0;
        self.parsed = 0;
        let mut at = 0;
        for _ in 0..p.pipeline {
            let cmd = p.mix[self.mix_pos % p.mix.len()];
            self.mix_pos = self.mix_pos.wrapping_add(1);
            let expect = match cmd {
                Cmd::Ping => {
                    put(buf, &mut at, b"*1\r\n$4\r\nPING\r\n");
                    Expect::Pong
                }
                Cmd::Get => {
                    let (i, key) = self.next_key();
                    put(buf, &mut at, b"*2\r\n$3\r\nGET\r\n$16\r\n");
                    put(buf, &mut at, &key_bytes(key));
                    put(buf, &mut at, b"\r\n");
                    Expect::Value {
                        key,
                        counter: self.last_set[i],
                    }
                }
                Cmd::Set => {
                    let (i, key) = self.next_key();
                    self.sets += 1;
                    self.last_set[i] = self.sets;
                    put(buf, &mut at, b"*3\r\n$3\r\nSET\r\n$16\r\n");
                    put(buf, &mut at, &key_bytes(key));
                    put(buf, &mut at, b"\r\n");
                    put(buf, &mut at, &p.value_header);
                    write_value(&mut buf[at..at + p.value_size], key, self.sets);
                    at += p.value_size;
                    put(buf, &mut at, b"\r\n");
                    Expect::Ok
                }
            };
            self.expect.push(expect);
        }
        at
    }

    /// Parses and checks the replies received so far, `buf[..recvd]`.
    /// `Ok(true)` when every reply of the batch is in (and nothing more),
    /// `Ok(false)` when more must come, `Err` with what was wrong.
    fn check_replies(&mut self, p: &Protocol, buf: &[u8], recvd: usize) -> Result<bool, String> {
        while self.answered < self.expect.len() {
            let Some((reply, used)) = parse_reply(&buf[self.parsed..recvd])? else {
                if recvd == buf.len() {
                    return Err("a reply longer than any expected".into());
                }
                return Ok(false);
            };
            let want = self.expect[self.answered];
            if !reply_matches(want, &reply, p) {
                return Err(format!(
                    "reply {} of the batch: expected {}, got {}",
                    self.answered + 1,
                    describe_expect(want),
                    describe_reply(&reply)
                ));
            }
            self.parsed += used;
            self.answered += 1;
        }
        if self.parsed < recvd {
            return Err(format!(
                "{} bytes after the batch's last reply: {:?}",
                recvd - self.parsed,
                String::from_utf8_lossy(&buf[self.parsed..recvd.min(self.parsed + 64)])
            ));
        }
        Ok(true)
    }
}

impl Exchange for Batches<'_> {
    fn next(&mut self, send: &mut [u8]) -> usize {
        self.build_batch(self.proto, send)
    }

    fn received(&mut self, recv: &[u8], filled: usize) -> Result<bool, String> {
        self.check_replies(self.proto, recv, filled)
    }

    fn finish(&mut self, _send: &[u8], _recv: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

/// Copies `bytes` into `buf` at `*at` and moves `*at` past them.
fn put(buf: &mut [u8], at: &mut usize, bytes: &[u8]) {
    buf[*at..*at + bytes.len()].copy_from_slice(bytes);
    *at += bytes.len();
}

/// `key:` and the key's number in 12 digits.
fn key_bytes(key: u64) -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    k[..4].copy_from_slice(b"key:");
    put_decimal(&mut k[4..], key);
    k
}

/// Writes `v` in decimal, zero-padded to fill `dst`.
fn put_decimal(dst: &mut [u8], mut v: u64) {
    for b in dst.iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Writes `v` in hexadecimal, zero-padded to fill `dst`.
fn put_hex(dst: &mut [u8], mut v: u64) {
    for b in dst.iter_mut().rev() {
        *b = b"0123456789abcdef"[(v & 15) as usize];
        v >>= 4;
    }
}

/// The value of `SET` number `counter` of key number `key`: the key's
/// number in 12 digits, `:`, the counter in 16 hex digits, then `.`s.
fn write_value(dst: &mut [u8], key: u64, counter: u64) {
    put_decimal(&mut dst[..KEY_DIGITS], key);
    dst[KEY_DIGITS] = b':';
    put_hex(&mut dst[KEY_DIGITS + 1..MIN_VALUE], counter);
    dst[MIN_VALUE..].fill(b'.');
}

/// One decoded reply (the types a client of these commands can meet).
#[derive(Debug, PartialEq, Eq)]
enum Reply<'a> {
    Simple(&'a [u8]),
    Error(&'a [u8]),
    Integer(&'a [u8]),
    /// `None`: the null bulk string.
    Bulk(Option<&'a [u8]>),
    /// An array header: never a right answer here.
    Array(&'a [u8]),
}

/// Decodes the reply at the start of `buf`: the reply and the bytes it
/// takes, `None` if it has not fully arrived, `Err` if it is not RESP.
fn parse_reply(buf: &[u8]) -> Result<Option<(Reply<'_>, usize)>, String> {
    let Some(&ty) = buf.first() else {
        return Ok(None);
    };
    // The first line, without its type byte and `\r\n`.
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        return Ok(None);
    };
    if nl < 1 || buf[nl - 1] != b'\r' {
        return Err(format!(
            "a reply line not ended by CRLF: {:?}",
            String::from_utf8_lossy(&buf[..nl.min(64)])
        ));
    }
    let line = &buf[1..nl - 1];
    let next = nl + 1;
    match ty {
        b'+' => Ok(Some((Reply::Simple(line), next))),
        b'-' => Ok(Some((Reply::Error(line), next))),
        b':' => Ok(Some((Reply::Integer(line), next))),
        b'*' => Ok(Some((Reply::Array(line), next))),
        b'$' => {
            if line == b"-1" {
                return Ok(Some((Reply::Bulk(None), next)));
            }
            let len = std::str::from_utf8(line)
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
                .ok_or_else(|| {
                    format!(
                        "a bad bulk string length: {:?}",
                        String::from_utf8_lossy(line)
                    )
                })?;
            let end = next
                .checked_add(len)
                .ok_or("a bulk string length out of range")?;
            match buf.get(end..end + 2) {
                None => {
                    if end + 2 > MAX_VALUE + 64 + next {
                        return Err(format!("a bulk string of {len} bytes"));
                    }
                    Ok(None)
                }
                Some(b"\r\n") => Ok(Some((Reply::Bulk(Some(&buf[next..end])), end + 2))),
                Some(_) => Err("a bulk string not followed by CRLF".into()),
            }
        }
        other => Err(format!(
            "a reply starting with {:?}",
            [other].escape_ascii().to_string()
        )),
    }
}

/// Whether `reply` is what `want` asks for.
fn reply_matches(want: Expect, reply: &Reply<'_>, p: &Protocol) -> bool {
    match (want, reply) {
        (Expect::Pong, Reply::Simple(s)) => *s == b"PONG",
        (Expect::Ok, Reply::Simple(s)) => *s == b"OK",
        (Expect::Value { counter: 0, .. }, Reply::Bulk(None)) => true,
        (Expect::Value { key, counter }, Reply::Bulk(Some(v))) => {
            if v.len() != p.value_size {
                return false;
            }
            let mut name = [0u8; KEY_DIGITS];
            put_decimal(&mut name, key);
            if counter == 0 {
                // Set by an earlier run: it must name this key.
                v[..KEY_DIGITS] == name && v[KEY_DIGITS] == b':'
            } else {
                let mut want = [0u8; MIN_VALUE];
                write_value(&mut want, key, counter);
                v[..MIN_VALUE] == want && v[MIN_VALUE..].iter().all(|&b| b == b'.')
            }
        }
        _ => false,
    }
}

fn describe_expect(want: Expect) -> String {
    match want {
        Expect::Pong => "+PONG".into(),
        Expect::Ok => "+OK".into(),
        Expect::Value { key, counter: 0 } => {
            format!("nil or an earlier run's value of key {key}")
        }
        Expect::Value { key, counter } => format!("the value of SET {counter} of key {key}"),
    }
}

fn describe_reply(r: &Reply<'_>) -> String {
    let s = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(80)]).into_owned();
    match r {
        Reply::Simple(t) => format!("+{}", s(t)),
        Reply::Error(t) => format!("-{}", s(t)),
        Reply::Integer(t) => format!(":{}", s(t)),
        Reply::Bulk(None) => "nil".into(),
        Reply::Bulk(Some(v)) => format!("a bulk string of {} bytes {:?}", v.len(), s(v)),
        Reply::Array(t) => format!("an array *{}", s(t)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proto(pipeline: usize, value_size: usize) -> Protocol {
        let args = Args::parse(
            [
                "--addr",
                "127.0.0.1:1",
                "--conns",
                "1",
                "--secs",
                "1",
                "--pipeline",
                &pipeline.to_string(),
                "--value-size",
                &value_size.to_string(),
            ]
            .iter()
            .map(|s| s.to_string()),
        )
        .unwrap();
        Protocol::new(&args)
    }

    #[test]
    fn parses_replies() {
        assert_eq!(
            parse_reply(b"+PONG\r\n+OK").unwrap(),
            Some((Reply::Simple(b"PONG"), 7))
        );
        assert_eq!(
            parse_reply(b"$-1\r\n").unwrap(),
            Some((Reply::Bulk(None), 5))
        );
        assert_eq!(
            parse_reply(b"$3\r\nabc\r\n").unwrap(),
            Some((Reply::Bulk(Some(b"abc")), 9))
        );
        assert_eq!(
            parse_reply(b"-ERR x\r\n").unwrap(),
            Some((Reply::Error(b"ERR x"), 8))
        );
        // Incomplete.
        for part in [&b""[..], b"+PON", b"+PONG\r", b"$3\r\nab", b"$3\r\nabc\r"] {
            assert_eq!(parse_reply(part).unwrap(), None, "{part:?}");
        }
        // Not RESP.
        for bad in [&b"+PONG\n"[..], b"$x\r\n", b"$3\r\nabcd\r\n", b"?\r\n"] {
            assert!(parse_reply(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_batch_checks_its_replies_in_order() {
        let p = proto(3, 32);
        let mut c = Batches::new(0, 40, 1, &p);
        let mut send_buf = vec![0u8; p.max_batch];
        let mut recv_buf = vec![0u8; p.max_replies];
        let send_len = c.build_batch(&p, &mut send_buf);
        let sent = String::from_utf8(send_buf[..send_len].to_vec()).unwrap();
        // One key (40): PING, SET key:000000000040, GET of it.
        let value = "000000000040:0000000000000001...";
        assert_eq!(
            sent,
            format!(
                "*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$16\r\nkey:000000000040\r\n$32\r\n{value}\r\n*2\r\n$3\r\nGET\r\n$16\r\nkey:000000000040\r\n"
            )
        );
        let replies = format!("+PONG\r\n+OK\r\n$32\r\n{value}\r\n");
        // Fed in two pieces.
        let (first, second) = replies.as_bytes().split_at(10);
        recv_buf[..first.len()].copy_from_slice(first);
        let mut recvd = first.len();
        assert_eq!(c.check_replies(&p, &recv_buf, recvd), Ok(false));
        recv_buf[recvd..recvd + second.len()].copy_from_slice(second);
        recvd += second.len();
        assert_eq!(c.check_replies(&p, &recv_buf, recvd), Ok(true));

        // A stale value (an older SET of this connection) is an error.
        c.build_batch(&p, &mut send_buf);
        let stale = format!("+PONG\r\n+OK\r\n$32\r\n{value}\r\n");
        recv_buf[..stale.len()].copy_from_slice(stale.as_bytes());
        let e = c.check_replies(&p, &recv_buf, stale.len()).unwrap_err();
        assert!(e.contains("reply 3"), "{e}");

        // An error reply, and bytes after the last reply.
        c.build_batch(&p, &mut send_buf);
        let err = b"-ERR nope\r\n";
        recv_buf[..err.len()].copy_from_slice(err);
        let e = c.check_replies(&p, &recv_buf, err.len()).unwrap_err();
        assert!(e.contains("-ERR nope"), "{e}");
        c.build_batch(&p, &mut send_buf);
        let fresh = {
            let mut v = [0u8; 32];
            write_value(&mut v, 40, 4);
            String::from_utf8(v.to_vec()).unwrap()
        };
        let extra = format!("+PONG\r\n+OK\r\n$32\r\n{fresh}\r\n+PONG\r\n");
        recv_buf[..extra.len()].copy_from_slice(extra.as_bytes());
        let e = c.check_replies(&p, &recv_buf, extra.len()).unwrap_err();
        assert!(e.contains("bytes after"), "{e}");
    }

    #[test]
    fn keys_not_set_by_this_run_accept_nil_or_their_own_old_value() {
        let p = proto(1, 32);
        let unknown = Expect::Value { key: 7, counter: 0 };
        let mut old = [0u8; 32];
        write_value(&mut old, 7, 99);
        assert!(reply_matches(unknown, &Reply::Bulk(None), &p));
        assert!(reply_matches(unknown, &Reply::Bulk(Some(&old)), &p));
        let mut other = [0u8; 32];
        write_value(&mut other, 8, 99);
        assert!(!reply_matches(unknown, &Reply::Bulk(Some(&other)), &p));
        assert!(!reply_matches(unknown, &Reply::Bulk(Some(&old[..31])), &p));
        let known = Expect::Value {
            key: 7,
            counter: 99,
        };
        assert!(reply_matches(known, &Reply::Bulk(Some(&old)), &p));
        assert!(!reply_matches(known, &Reply::Bulk(None), &p));
        assert!(!reply_matches(Expect::Ok, &Reply::Simple(b"PONG"), &p));
        assert!(!reply_matches(Expect::Pong, &Reply::Error(b"ERR"), &p));
    }

    #[test]
    fn bad_arguments_are_refused() {
        let parse = |extra: &[&str]| {
            let mut v: Vec<String> = ["--addr", "127.0.0.1:1", "--conns", "2", "--secs", "1"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            v.extend(extra.iter().map(|s| s.to_string()));
            Args::parse(v.into_iter())
        };
        assert!(parse(&[]).is_ok());
        for bad in [
            &["--pipeline", "0"][..],
            &["--keyspace", "1"],
            &["--value-size", "8"],
            &["--mix", "ping,del"],
            &["--rate", "0"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let a = parse(&["--mix", "GET,set"]).unwrap();
        assert_eq!(a.mix, [Cmd::Get, Cmd::Set]);
    }
}
