//! Slow and silent clients against the real `http` and `kv` example servers
//! (issue 6, bad input): a client that trickles its request in a byte at a
//! time, or connects and sends nothing, holds its own connection and
//! nothing more.
//!
//! Each test starts the example as a child process and opens
//! [`SLOW_CLIENTS`] connections that each send a request one byte per
//! [`PAUSE`] (the scenario is one byte per second; the pause is
//! shorter to keep the test short), plus [`IDLE_CLIENTS`] connections that
//! send nothing. Meanwhile a normal client makes complete requests, on one
//! connection and on fresh ones, and every one must be answered correctly.
//! Then each slow client must get exactly the answer to its request, and
//! each idle one, sending a request at last, its answer too. The server's
//! resident memory (`VmRSS`) must not grow by more than [`RSS_GROWTH_KB`]
//! while the slow clients are connected.
//!
//! All waits are bounded (socket timeouts, [`with_deadline`]); nothing is
//! asserted about how long anything takes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use integration_tests::{with_deadline, ExampleServer};

/// How long one test may take, including building the examples on first use.
const TEST_LIMIT: Duration = Duration::from_secs(300);

/// How long a client waits for bytes before failing.
const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// The clients that trickle their request in.
const SLOW_CLIENTS: usize = 50;

/// The clients that connect and say nothing until the end.
const IDLE_CLIENTS: usize = 10;

/// The pause between two bytes of a slow client.
const PAUSE: Duration = Duration::from_millis(100);

/// The most the server's resident memory may grow while the slow and idle
/// clients are connected, in KiB: far more than the few tens of KiB of
/// buffers each connection owns, far less than memory that grows with
/// what the clients send or declare.
const RSS_GROWTH_KB: u64 = 16 * 1024;

/// What a test needs to know of a protocol: the request of each slow
/// client and of each normal request, with their exact answers.
struct Protocol {
    /// The example's name.
    name: &'static str,
    /// The request of slow (or idle) client `i` and its answer.
    slow: fn(usize) -> (Vec<u8>, Vec<u8>),
    /// The normal client's request number `n` and its answer.
    normal: fn(usize) -> (Vec<u8>, Vec<u8>),
}

/// The `http` example's answer to `GET /`.
const HTTP_OK: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";

/// The `http` example's answer to an unknown path.
const HTTP_NOT_FOUND: &[u8] =
    b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nNot Found\n";

/// An HTTP request for `/` (answered 200) when `n` is even, for an unknown
/// path (answered 404) when it is odd, with a header field to trickle.
fn http_request(n: usize, who: &str) -> (Vec<u8>, Vec<u8>) {
    if n % 2 == 0 {
        let req = format!("GET /?{who}={n} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        (req.into_bytes(), HTTP_OK.to_vec())
    } else {
        let req = format!("GET /{who}/{n} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        (req.into_bytes(), HTTP_NOT_FOUND.to_vec())
    }
}

/// A RESP command: an array of bulk strings.
fn resp_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A RESP bulk string reply.
fn resp_bulk(bytes: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
    out
}

/// The `kv` slow client's command: `ECHO slow-<i>`, answered with its own
/// message.
fn kv_slow(i: usize) -> (Vec<u8>, Vec<u8>) {
    let msg = format!("slow-{i}");
    (
        resp_command(&[b"ECHO", msg.as_bytes()]),
        resp_bulk(msg.as_bytes()),
    )
}

/// The `kv` normal client's request: a pipelined `SET` and `GET` of a key
/// of its own (the slow clients' commands must not disturb the store).
fn kv_normal(n: usize) -> (Vec<u8>, Vec<u8>) {
    let key = format!("normal-{}", n % 7);
    let value = format!("value-{n}");
    let mut req = resp_command(&[b"SET", key.as_bytes(), value.as_bytes()]);
    req.extend(resp_command(&[b"GET", key.as_bytes()]));
    let mut answer = b"+OK\r\n".to_vec();
    answer.extend(resp_bulk(value.as_bytes()));
    (req, answer)
}

static HTTP: Protocol = Protocol {
    name: "http",
    slow: |i| http_request(i, "slow"),
    normal: |n| http_request(n, "normal"),
};

static KV: Protocol = Protocol {
    name: "kv",
    slow: kv_slow,
    normal: kv_normal,
};

/// A connection to `addr` with bounded reads and writes.
fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Reads exactly as many bytes as `expected` has and checks they are it.
fn expect_answer(stream: &mut TcpStream, expected: &[u8], what: &str) {
    let mut got = vec![0; expected.len()];
    if let Err(e) = stream.read_exact(&mut got) {
        panic!("{what}: no complete answer: {e}");
    }
    assert!(
        got == expected,
        "{what}: answered {:?}, expected {:?}",
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(expected)
    );
}

/// The pid of the process listening on `addr`, found through the
/// listening socket's inode (`/proc/net/tcp`) and the process holding it
/// (`/proc/<pid>/fd`); `None` if it cannot be found.
fn listener_pid(addr: SocketAddr) -> Option<u32> {
    let local = format!(":{:04X}", addr.port());
    let tcp = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let inode = tcp.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // sl, local_address, rem_address, st (0A: LISTEN), ..., inode.
        let listening = fields.get(1)?.ends_with(&local) && *fields.get(3)? == "0A";
        listening.then(|| fields.get(9).map(|s| s.to_string()))?
    })?;
    let socket = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == socket.as_str()) {
                return Some(pid);
            }
        }
    }
    None
}

/// The resident memory of process `pid` in KiB (`VmRSS`).
fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Makes complete requests until `stop` is set (at least one), on one
/// kept-alive connection that is replaced by a fresh one every 16
/// requests; every answer must be exact. Returns how many it made.
fn normal_client(protocol: &Protocol, addr: SocketAddr, stop: &AtomicBool) -> usize {
    let mut stream = connect(addr);
    let mut n = 0;
    loop {
        if n % 16 == 15 {
            stream = connect(addr);
        }
        let (request, answer) = (protocol.normal)(n);
        stream.write_all(&request).expect("normal client: write");
        expect_answer(&mut stream, &answer, &format!("normal request {n}"));
        n += 1;
        if stop.load(Ordering::Relaxed) {
            return n;
        }
        // Busy, but leaving the shared cores some air.
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The whole scenario for one example server (see the module doc).
fn slow_clients_hold_only_their_connections(protocol: &'static Protocol) {
    let server = ExampleServer::start(env!("CARGO_TARGET_TMPDIR"), protocol.name);
    let addr = server.addr;

    // Warm up, then take the memory baseline.
    let stop = AtomicBool::new(true);
    normal_client(protocol, addr, &stop);
    let pid = listener_pid(addr);
    let baseline = pid.and_then(rss_kb);
    if baseline.is_none() {
        eprintln!("slow_client: cannot read the server's VmRSS; memory not checked");
    }

    let mut idle: Vec<TcpStream> = (0..IDLE_CLIENTS).map(|_| connect(addr)).collect();
    let mut slow: Vec<(TcpStream, Vec<u8>, Vec<u8>)> = (0..SLOW_CLIENTS)
        .map(|i| {
            let (request, answer) = (protocol.slow)(i);
            (connect(addr), request, answer)
        })
        .collect();

    // The normal client works while the slow ones trickle and the idle
    // ones hold their connections.
    let stop = Arc::new(AtomicBool::new(false));
    let normal = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || normal_client(protocol, addr, &stop))
    };
    let longest = slow.iter().map(|(_, req, _)| req.len()).max().unwrap_or(0);
    let mut most_rss = baseline;
    for step in 0..longest {
        for (i, (stream, request, _)) in slow.iter_mut().enumerate() {
            if let Some(byte) = request.get(step) {
                if let Err(e) = stream.write_all(std::slice::from_ref(byte)) {
                    panic!("slow client {i}: write of byte {step}: {e}");
                }
            }
        }
        if let (Some(pid), Some(most)) = (pid, most_rss) {
            if let Some(now) = rss_kb(pid) {
                most_rss = Some(most.max(now));
            }
        }
        std::thread::sleep(PAUSE);
    }
    stop.store(true, Ordering::Relaxed);
    let made = normal.join().expect("the normal client failed");
    assert!(made > 0);

    // Each slow client's request is complete now: it gets its own answer.
    for (i, (stream, _, answer)) in slow.iter_mut().enumerate() {
        expect_answer(stream, answer, &format!("slow client {i}"));
    }
    // The idle clients still have their connections, and speak at last.
    for (i, stream) in idle.iter_mut().enumerate() {
        let (request, answer) = (protocol.slow)(SLOW_CLIENTS + i);
        stream.write_all(&request).expect("idle client: write");
        expect_answer(stream, &answer, &format!("idle client {i}"));
    }

    eprintln!(
        "slow_client: {}: {made} normal requests answered meanwhile; VmRSS {baseline:?} -> at most {most_rss:?} KiB",
        protocol.name
    );
    if let (Some(base), Some(most)) = (baseline, most_rss) {
        assert!(
            most <= base + RSS_GROWTH_KB,
            "the {} server grew from {base} KiB to {most} KiB with {} slow and {} idle clients",
            protocol.name,
            SLOW_CLIENTS,
            IDLE_CLIENTS
        );
    }
    drop(slow);
    drop(idle);
    drop(server);
}

/// Fifty clients trickling requests in a byte at a time, and ten silent
/// ones, do not stop the `http` server answering a normal client; then
/// each of them gets its answer, and memory stays bounded.
#[test]
fn http_slow_clients_hold_only_their_connections() {
    with_deadline(TEST_LIMIT, || {
        slow_clients_hold_only_their_connections(&HTTP)
    });
}

/// The same for the `kv` server, with `ECHO` commands trickled in and a
/// normal client running pipelined `SET`s and `GET`s.
#[test]
fn kv_slow_clients_hold_only_their_connections() {
    with_deadline(TEST_LIMIT, || slow_clients_hold_only_their_connections(&KV));
}
