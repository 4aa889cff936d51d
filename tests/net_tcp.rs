//! Integration tests of `net`'s TCP types (`TcpListener`, `TcpStream`,
//! `Incoming`) on loopback, against the net issue ("Tests that must exist",
//! "Bad input and faults") and `API.md`:
//!
//! * 500 concurrent echo connections, payloads of 1 byte to 64 KiB verified
//!   byte for byte, with clients as tasks and as std threads;
//! * `readv`/`writev` with 16 buffers, `incoming()` with 300 connections;
//! * a read abandoned by a timeout while data arrives: its buffer is not
//!   freed before the kernel is done, and the data is either lost with the
//!   cancelled read (the documented cost) or readable by the next read;
//! * error paths: refused connections, addresses in use, a peer resetting
//!   mid-write (an error on that stream only, and never a `SIGPIPE`);
//! * `read_exact`/`write_all` across short transfers, EOF, `shutdown`;
//! * options, addresses, `from_std`, `Debug`, the `runtime::io` traits, no
//!   descriptor leak, and concurrent read and write on one stream.
//!
//! Every test runs under `with_deadline`, so a hang is a failure. Waits are
//! on conditions, each bounded; no verdict depends on a sleep being long
//! enough (the few sleeps only make a race likely, and say so).

use std::cell::Cell;
use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex, Once, PoisonError, RwLock};
use std::time::{Duration, Instant};

use integration_tests::with_deadline;
use net::{TcpListener, TcpStream, UnixStream};
use runtime::buf::{IoBuf, IoBufMut};
use runtime::io::{OwnedRead, OwnedWrite};
use runtime::op::in_flight;
use runtime::time::{sleep, timeout};
use runtime::Runtime;

/// The limit of every test: generous, a healthy run takes a few seconds.
const LIMIT: Duration = Duration::from_secs(60);
/// The limit of one bounded wait inside a test.
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Tests take it shared; the descriptor-leak test takes it exclusively, so
/// that no other test of this binary opens or closes descriptors while it
/// counts them.
static FD_COUNT_LOCK: RwLock<()> = RwLock::new(());

/// Runs `body` under the deadline, holding the shared side of
/// [`FD_COUNT_LOCK`].
fn guarded<R: Send + 'static>(body: impl FnOnce() -> R + Send + 'static) -> R {
    with_deadline(LIMIT, move || {
        let _shared = FD_COUNT_LOCK.read().unwrap_or_else(PoisonError::into_inner);
        body()
    })
}

/// Runs the future made by `make` on a fresh runtime, under the deadline.
fn run<M, F>(make: M) -> F::Output
where
    M: FnOnce() -> F + Send + 'static,
    F: Future,
    F::Output: Send + 'static,
{
    guarded(move || {
        let rt = Runtime::new().expect("cannot start the runtime");
        rt.block_on(make())
    })
}

/// A small deterministic pseudo-random generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `len` pseudo-random bytes, different for each seed.
fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed + 1);
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        let word = rng.next().to_le_bytes();
        let take = word.len().min(len - v.len());
        v.extend_from_slice(&word[..take]);
    }
    v
}

/// `n` payload sizes from 1 byte to 64 KiB: both ends, then sizes spread
/// over every power of two in between.
fn echo_sizes(n: usize, seed: u64) -> Vec<usize> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| match i {
            0 => 1,
            1 => 64 * 1024,
            _ => {
                let span = 1u64 << (1 + rng.below(16));
                (1 + rng.below(span)) as usize
            }
        })
        .collect()
}

/// Asserts equality of two byte strings, naming the first difference
/// instead of printing kilobytes.
fn assert_same(got: &[u8], want: &[u8], what: &str) {
    if got == want {
        return;
    }
    let first = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    panic!(
        "{what}: got {} bytes, want {}; first difference at byte {first}",
        got.len(),
        want.len()
    );
}

/// A connected pair: `(client, server side)`, with their addresses
/// checked against each other.
async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    let client = TcpStream::connect(addr).await.expect("connect");
    let (server, peer) = listener.accept().await.expect("accept");
    assert_eq!(peer, client.local_addr().expect("client local_addr"));
    (client, server)
}

/// Echoes everything it reads until EOF; returns the byte count.
async fn echo_conn(stream: TcpStream) -> io::Result<usize> {
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut total = 0;
    loop {
        let (res, b) = stream.read(buf).await;
        let n = res?;
        if n == 0 {
            return Ok(total);
        }
        let (res, mut b) = stream.write_all(b).await;
        res?;
        total += n;
        b.clear();
        buf = b;
    }
}

/// Reads until EOF, growing the vector as needed.
async fn read_to_end<S: OwnedRead>(stream: &S, mut got: Vec<u8>) -> io::Result<Vec<u8>> {
    loop {
        if got.len() == got.capacity() {
            got.reserve(16 * 1024);
        }
        let (res, b) = stream.read(got).await;
        got = b;
        if res? == 0 {
            return Ok(got);
        }
    }
}

/// Waits (bounded) until `cond` holds, checking every millisecond.
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(1)).await;
    }
}

/// The number of bytes queued for reading on a socket (`FIONREAD`).
fn queued(fd: &impl AsRawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which points at
    // a live local.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) };
    assert_eq!(rc, 0, "FIONREAD: {}", io::Error::last_os_error());
    n as usize
}

/// The number of descriptors this process has open.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

// ---------------------------------------------------------------------------
// Echo at scale
// ---------------------------------------------------------------------------

const ECHO_CONNS: usize = 500;

/// One echo client: writes its payload from a second task while this one
/// reads the echo, then half-closes and checks that exactly the payload
/// came back before EOF.
async fn echo_client(addr: SocketAddr, seed: u64, len: usize) {
    let stream = Rc::new(TcpStream::connect(addr).await.expect("connect"));
    let data = payload(seed, len);
    let writer = {
        let stream = stream.clone();
        let data = data.clone();
        runtime::spawn(async move {
            let (res, _) = stream.write_all(data).await;
            res.expect("client write_all");
            stream.shutdown(Shutdown::Write).expect("client shutdown");
        })
    };
    let got = read_to_end(&*stream, Vec::with_capacity(len))
        .await
        .expect("client read");
    writer.await.expect("writer task");
    assert_same(
        &got,
        &data,
        &format!("echo of connection {seed} ({len} bytes)"),
    );
}

/// 500 connections open at once against an in-test echo server (an
/// `accept()` loop spawning one task per connection), clients being tasks
/// on the same runtime: every payload (1 byte to 64 KiB, pseudo-random)
/// comes back byte for byte, and the server echoed exactly the bytes sent.
#[test]
fn echo_500_concurrent_connections_task_clients() {
    let total = run(|| async {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local_addr");
        let server = runtime::spawn(async move {
            let mut handlers = Vec::with_capacity(ECHO_CONNS);
            for _ in 0..ECHO_CONNS {
                let (stream, peer) = listener.accept().await.expect("accept");
                assert!(peer.ip().is_loopback());
                handlers.push(runtime::spawn(echo_conn(stream)));
            }
            let mut total = 0;
            for h in handlers {
                total += h.await.expect("handler task").expect("echo");
            }
            total
        });
        let sizes = echo_sizes(ECHO_CONNS, 7);
        let clients: Vec<_> = sizes
            .iter()
            .enumerate()
            .map(|(i, &len)| runtime::spawn(echo_client(addr, i as u64, len)))
            .collect();
        for c in clients {
            c.await.expect("client task");
        }
        let echoed = server.await.expect("server task");
        assert_eq!(echoed, sizes.iter().sum::<usize>());
        echoed
    });
    assert!(total > 0);
}

/// The same 500 echo connections with clients as std threads
/// (`std::net::TcpStream`, all 500 open at once) against the runtime's
/// server in its own thread, accepting through `incoming()`.
#[test]
fn echo_500_concurrent_connections_std_thread_clients() {
    const THREADS: usize = 50;
    const PER_THREAD: usize = ECHO_CONNS / THREADS;
    guarded(|| {
        let (addr_tx, addr_rx) = mpsc::channel();
        let server = std::thread::spawn(move || {
            let rt = Runtime::new().expect("cannot start the runtime");
            rt.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
                addr_tx.send(listener.local_addr().expect("addr")).unwrap();
                let mut incoming = listener.incoming();
                let mut handlers = Vec::with_capacity(ECHO_CONNS);
                while handlers.len() < ECHO_CONNS {
                    let stream = incoming
                        .next()
                        .await
                        .expect("incoming never ends")
                        .expect("accept");
                    handlers.push(runtime::spawn(echo_conn(stream)));
                }
                let mut total = 0;
                for h in handlers {
                    total += h.await.expect("handler task").expect("echo");
                }
                total
            })
        });
        let addr: SocketAddr = addr_rx.recv().expect("server address");
        let sizes = Arc::new(echo_sizes(ECHO_CONNS, 11));
        let barrier = Arc::new(Barrier::new(THREADS));
        let clients: Vec<_> = (0..THREADS)
            .map(|t| {
                let sizes = sizes.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let conns: Vec<_> = (0..PER_THREAD)
                        .map(|_| std::net::TcpStream::connect(addr).expect("std connect"))
                        .collect();
                    // All 500 connections are open from here on.
                    barrier.wait();
                    for (k, mut conn) in conns.into_iter().enumerate() {
                        let id = t * PER_THREAD + k;
                        let data = payload(1000 + id as u64, sizes[id]);
                        let mut writer = conn.try_clone().expect("try_clone");
                        let got = std::thread::scope(|s| {
                            s.spawn(|| {
                                writer.write_all(&data).expect("std write_all");
                                writer.shutdown(Shutdown::Write).expect("std shutdown");
                            });
                            let mut got = Vec::new();
                            conn.read_to_end(&mut got).expect("std read_to_end");
                            got
                        });
                        assert_same(&got, &data, &format!("std echo of connection {id}"));
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().expect("client thread");
        }
        let echoed = server.join().expect("server thread");
        assert_eq!(echoed, sizes.iter().sum::<usize>());
    });
}

// ---------------------------------------------------------------------------
// Vectored I/O
// ---------------------------------------------------------------------------

/// `writev` of 16 buffers (distinct contents, sizes from 1 byte to 16 KiB)
/// sends them in order, and one `readv` into 16 vectors of other sizes,
/// some already holding a prefix and one already full, fills each vector's
/// spare capacity in order and extends its length, leaving prefixes and the
/// full vector untouched. A short `readv` fills the first buffers only.
#[test]
fn readv_writev_16_buffers() {
    run(|| async {
        let (a, b) = tcp_pair().await;
        let sizes = [
            1usize, 7, 64, 300, 1024, 5, 4096, 13, 2048, 100, 8192, 3, 512, 777, 16384, 9,
        ];
        let out: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| payload(50 + i as u64, n))
            .collect();
        let expected: Vec<u8> = out.concat();
        let total = expected.len();

        let (res, out) = a.writev(out).await;
        let n = res.expect("writev");
        assert!(n > 0 && n <= total, "writev wrote {n} of {total}");
        assert_eq!(out.len(), 16, "writev gives the buffers back");
        if n < total {
            // A short write is allowed; the rest goes separately.
            let (res, _) = a.write_all(expected[n..].to_vec()).await;
            res.expect("write_all of the rest");
        }
        // Wait until everything is queued at the reader, so that a single
        // readv can take it all.
        wait_until("all bytes to reach the reader", || queued(&b) >= total).await;

        // 16 receive vectors of sizes unlike the sender's, summing to
        // `total`; every third starts with a prefix; #5 is already full.
        let recv_sizes: Vec<usize> = {
            let mut s: Vec<usize> = sizes.iter().rev().copied().collect();
            s[5] = 0; // the full one takes nothing
            let diff = total - s.iter().sum::<usize>();
            s[0] += diff;
            s
        };
        let mut ins = Vec::with_capacity(16);
        let mut prefixes = Vec::with_capacity(16);
        for (i, &room) in recv_sizes.iter().enumerate() {
            let prefix: Vec<u8> = if i == 5 {
                b"FULL".to_vec()
            } else if i % 3 == 0 {
                format!("prefix-{i}:").into_bytes()
            } else {
                Vec::new()
            };
            let mut v = Vec::with_capacity(prefix.len() + room);
            v.extend_from_slice(&prefix);
            assert_eq!(v.capacity() - v.len(), room);
            ins.push(v);
            prefixes.push(prefix);
        }
        let (res, ins) = b.readv(ins).await;
        assert_eq!(res.expect("readv"), total);
        let mut at = 0;
        for (i, v) in ins.iter().enumerate() {
            let prefix = &prefixes[i];
            assert_eq!(v.len(), v.capacity(), "vector {i} is filled to capacity");
            assert_same(&v[..prefix.len()], prefix, &format!("prefix of vector {i}"));
            let body = &v[prefix.len()..];
            assert_same(body, &expected[at..at + body.len()], &format!("vector {i}"));
            at += body.len();
        }
        assert_eq!(at, total);

        // A short readv: 10 bytes into [4, 4, 8] fills 4, 4, 2.
        let (res, _) = a.write_all(b"0123456789".to_vec()).await;
        res.expect("write_all");
        wait_until("10 bytes to reach the reader", || queued(&b) >= 10).await;
        let bufs = vec![
            Vec::with_capacity(4),
            Vec::with_capacity(4),
            Vec::with_capacity(8),
        ];
        let (res, bufs) = b.readv(bufs).await;
        assert_eq!(res.expect("short readv"), 10);
        assert_eq!(bufs[0], b"0123");
        assert_eq!(bufs[1], b"4567");
        assert_eq!(bufs[2], b"89");

        // Vectored I/O with other buffer types: static slices out, boxes in
        // (a box is overwritten from its start).
        let parts: Vec<&'static [u8]> = vec![b"ab", b"", b"cde"];
        let (res, _) = a.writev(parts).await;
        assert_eq!(res.expect("writev of static slices"), 5);
        wait_until("5 bytes to reach the reader", || queued(&b) >= 5).await;
        let boxes: Vec<Box<[u8]>> = vec![vec![0xff; 3].into(), vec![0xff; 3].into()];
        let (res, boxes) = b.readv(boxes).await;
        assert_eq!(res.expect("readv into boxes"), 5);
        assert_eq!(&*boxes[0], b"abc");
        assert_eq!(&boxes[1][..2], b"de");
    });
}

// ---------------------------------------------------------------------------
// incoming()
// ---------------------------------------------------------------------------

/// `incoming()` (multishot accept) yields 300 connections, each identified
/// by the ID its client sends first: every ID is seen exactly once, through
/// both the inherent `next()` and the `futures_core::Stream` impl.
#[test]
fn incoming_accepts_300_connections() {
    const CONNS: usize = 300;
    run(|| async {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local_addr");
        let server = runtime::spawn(async move {
            let mut incoming = listener.incoming();
            let mut readers = Vec::with_capacity(CONNS);
            for i in 0..CONNS {
                let next = if i % 2 == 0 {
                    incoming.next().await
                } else {
                    std::future::poll_fn(|cx| {
                        futures_core::Stream::poll_next(Pin::new(&mut incoming), cx)
                    })
                    .await
                };
                let stream = next.expect("incoming never ends").expect("accept");
                readers.push(runtime::spawn(async move {
                    let (res, id) = stream.read_exact(Vec::with_capacity(2)).await;
                    res.expect("read the ID");
                    let (res, _) = stream.write_all(&b"k"[..]).await;
                    res.expect("ack");
                    u16::from_le_bytes([id[0], id[1]]) as usize
                }));
            }
            let mut seen = vec![0usize; CONNS];
            for r in readers {
                let id = r.await.expect("reader task");
                assert!(id < CONNS, "unknown ID {id}");
                seen[id] += 1;
            }
            seen
        });
        let clients: Vec<_> = (0..CONNS)
            .map(|id| {
                runtime::spawn(async move {
                    let s = TcpStream::connect(addr).await.expect("connect");
                    let (res, _) = s.write_all((id as u16).to_le_bytes().to_vec()).await;
                    res.expect("send ID");
                    let (res, ack) = s.read_exact(Vec::with_capacity(1)).await;
                    res.expect("read ack");
                    assert_eq!(ack, b"k");
                })
            })
            .collect();
        for c in clients {
            c.await.expect("client task");
        }
        let seen = server.await.expect("server task");
        for (id, &n) in seen.iter().enumerate() {
            assert_eq!(n, 1, "ID {id} seen {n} times");
        }
    });
}

// ---------------------------------------------------------------------------
// A read abandoned by a timeout
// ---------------------------------------------------------------------------

/// Counts drops of [`TrackedBuf`]s and keeps the contents of the last one.
#[derive(Default)]
struct Probe {
    drops: AtomicUsize,
    contents: Mutex<Option<Vec<u8>>>,
}

impl Probe {
    fn drops(&self) -> usize {
        self.drops.load(Ordering::SeqCst)
    }

    /// The bytes the kernel wrote into the dropped buffer: its non-zero
    /// prefix (the buffer starts zeroed, the test data has no zero byte).
    fn written(&self) -> Vec<u8> {
        let contents = self.contents.lock().unwrap();
        let all = contents.as_ref().expect("the buffer was dropped");
        all.iter().copied().take_while(|&b| b != 0).collect()
    }
}

/// A read buffer that delegates to a zeroed `Vec` and reports its drop
/// (with its final contents) to a [`Probe`].
struct TrackedBuf {
    vec: Vec<u8>,
    init: usize,
    probe: Arc<Probe>,
}

impl TrackedBuf {
    fn new(len: usize, probe: Arc<Probe>) -> TrackedBuf {
        TrackedBuf {
            vec: vec![0; len],
            init: 0,
            probe,
        }
    }
}

impl Drop for TrackedBuf {
    fn drop(&mut self) {
        *self.probe.contents.lock().unwrap() = Some(self.vec.clone());
        self.probe.drops.fetch_add(1, Ordering::SeqCst);
    }
}

// SAFETY: the pointer is the Vec's heap buffer, which does not move with
// the value and lives until the value is dropped; `init <= vec.len()`
// (set_init's contract) and all `vec.len()` bytes are initialised (zeroed
// at creation).
unsafe impl IoBuf for TrackedBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.vec.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.init
    }
    fn bytes_total(&self) -> usize {
        self.vec.len()
    }
}

// SAFETY: as for IoBuf; every byte of the Vec's buffer is writable, and
// the mutable pointer is the same address as `stable_ptr`.
unsafe impl IoBufMut for TrackedBuf {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.vec.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, pos: usize) {
        self.init = self.init.max(pos);
    }
}

/// Rounds of reads abandoned by a timeout, on a default or an SQPOLL ring;
/// even rounds write the peer's data before the cancel is even submitted
/// (racing it), odd rounds after it completed.
fn abandoned_read_rounds(sqpoll: bool) {
    const ROUNDS: usize = 60;
    let (lost, kept) = guarded(move || {
        let rt = if sqpoll {
            Runtime::builder()
                .sqpoll(Duration::from_millis(100))
                .build()
        } else {
            Runtime::new()
        };
        let rt = rt.expect("cannot start the runtime");
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("local_addr");
            // The peer is a std socket, so that its writes happen at once, with
            // no runtime turn in between.
            let mut peer = std::net::TcpStream::connect(addr).expect("std connect");
            let (stream, _) = listener.accept().await.expect("accept");
            let (mut lost, mut kept) = (0, 0);
            for round in 0..ROUNDS {
                let probe = Arc::new(Probe::default());
                let before = in_flight();
                let buf = TrackedBuf::new(128, probe.clone());
                let res = timeout(Duration::from_millis(2), stream.read(buf)).await;
                assert!(
                    res.is_err(),
                    "round {round}: no data was sent, yet the read finished"
                );
                // The future is gone but the runtime has not turned since: the
                // kernel still owns the buffer.
                assert_eq!(
                    probe.drops(),
                    0,
                    "round {round}: buffer dropped while its read was in the kernel"
                );
                assert!(
                    in_flight() > before,
                    "round {round}: the abandoned read is no longer tracked"
                );
                let marker: Vec<u8> = (0..(16 + round % 48))
                    .map(|k| (round + k) as u8 | 1)
                    .collect();
                let racing = round % 2 == 0;
                if racing {
                    // Write while the cancel is not even submitted yet.
                    peer.write_all(&marker).expect("peer write");
                }
                wait_until("the abandoned read's buffer to be dropped", || {
                    probe.drops() > 0
                })
                .await;
                assert_eq!(probe.drops(), 1, "round {round}: buffer dropped twice");
                assert_eq!(in_flight(), before, "round {round}: op slot not freed");
                let taken = probe.written();
                if !racing {
                    assert!(
                        taken.is_empty(),
                        "round {round}: cancelled read wrote {taken:?}"
                    );
                    peer.write_all(&marker).expect("peer write");
                }
                assert!(
                    taken.len() <= marker.len(),
                    "round {round}: kernel wrote {taken:?}"
                );
                assert_same(
                    &taken,
                    &marker[..taken.len()],
                    "data taken by the cancelled read",
                );
                if taken.is_empty() {
                    kept += 1;
                } else {
                    lost += 1;
                }
                // Whatever the cancelled read did not take is readable now,
                // followed by nothing but the next marker.
                let rest = marker.len() - taken.len();
                let mut sync = marker[taken.len()..].to_vec();
                sync.extend_from_slice(b"SYNC");
                peer.write_all(b"SYNC").expect("peer write");
                let (res, got) = stream.read_exact(Vec::with_capacity(rest + 4)).await;
                res.expect("read the rest");
                assert_same(
                    &got,
                    &sync,
                    &format!("round {round}: data after the cancel"),
                );
            }
            // Still usable in both directions.
            let (res, _) = stream.write_all(&b"still alive"[..]).await;
            res.expect("write after the cancels");
            let mut back = [0u8; 11];
            peer.read_exact(&mut back).expect("peer read");
            assert_eq!(&back, b"still alive");
            (lost, kept)
        })
    });
    assert_eq!(lost + kept, ROUNDS);
    eprintln!(
        "abandoned reads (sqpoll: {sqpoll}): {lost} took the racing data (lost), {kept} left it readable"
    );
}

/// A read abandoned by `timeout` keeps its buffer alive while the kernel
/// may still write into it: right after the timeout (before the runtime
/// could reap a cancel) the buffer is not dropped and the op is still
/// counted by `in_flight()`; it is dropped exactly once when the op is over.
/// Data the peer writes in the cancel's window is either consumed by the
/// cancelled read (lost: exactly what the dropped buffer holds) or readable
/// by the next read, never both and never duplicated; data written after the
/// cancel completed is always readable. The stream stays usable throughout.
#[test]
fn read_abandoned_by_timeout_keeps_its_buffer_until_the_kernel_is_done() {
    if integration_tests::skip_on_epoll("the kernel owning a dropped read's buffer is io_uring's") {
        return;
    }
    abandoned_read_rounds(false);
}

/// The same with an SQPOLL ring, where the kernel's poller thread runs the
/// read as soon as the data arrives, before the runtime's cancel reaches
/// it: the kernel then writes into the buffer after its future is gone
/// (the case AddressSanitizer watches), and the data is the cancel's cost.
#[test]
fn read_abandoned_by_timeout_on_an_sqpoll_ring() {
    if integration_tests::skip_on_epoll(
        "SQPOLL and the kernel owning a dropped read's buffer are io_uring's",
    ) {
        return;
    }
    abandoned_read_rounds(true);
}

/// Polls `fut` once, in the calling task's context.
async fn poll_once<F: Future + Unpin>(fut: &mut F) -> std::task::Poll<F::Output> {
    std::future::poll_fn(|cx| std::task::Poll::Ready(Pin::new(&mut *fut).poll(cx))).await
}

/// On an SQPOLL ring the kernel's poller runs a read as soon as data
/// arrives, without the runtime turning. A read that took its data in the
/// kernel (the socket's queue shrank by exactly the buffer's size) but
/// whose completion was not reaped yet is dropped: its buffer, which the
/// kernel just wrote, lives until the runtime reaps that completion, is
/// then dropped exactly once holding the data (lost, the documented cost
/// of dropping a read), and the next read gets exactly the bytes that
/// followed.
#[test]
fn read_completed_in_the_kernel_then_dropped_keeps_its_buffer_until_reaped() {
    if integration_tests::skip_on_epoll("SQPOLL and a read completed in the kernel are io_uring's")
    {
        return;
    }
    guarded(|| {
        let rt = Runtime::builder()
            .sqpoll(Duration::from_millis(200))
            .build()
            .expect("cannot start an SQPOLL runtime");
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("local_addr");
            let mut peer = std::net::TcpStream::connect(addr).expect("std connect");
            let (stream, _) = listener.accept().await.expect("accept");
            for round in 0..20u8 {
                let probe = Arc::new(Probe::default());
                let before = in_flight();
                let mut read = Box::pin(stream.read(TrackedBuf::new(128, probe.clone())));
                assert!(poll_once(&mut read).await.is_pending(), "no data yet");
                // One turn, so that the SQE reaches the kernel; nothing can
                // complete yet.
                runtime::yield_now().await;
                let data: Vec<u8> = (0..138u32)
                    .map(|k| (k as u8).wrapping_add(round) | 1)
                    .collect();
                peer.write_all(&data).expect("peer write");
                // Without letting the runtime turn, wait (bounded) until the
                // kernel's read took 128 bytes, leaving 10 queued.
                let deadline = Instant::now() + WAIT;
                while queued(&stream) != 10 {
                    assert!(
                        Instant::now() < deadline,
                        "round {round}: the kernel never ran the read ({} bytes queued)",
                        queued(&stream)
                    );
                    std::thread::sleep(Duration::from_micros(100));
                }
                drop(read);
                assert_eq!(
                    probe.drops(),
                    0,
                    "round {round}: buffer dropped before its completion was reaped"
                );
                assert!(in_flight() > before, "round {round}: op no longer tracked");
                wait_until("the dropped read's buffer to be released", || {
                    probe.drops() > 0
                })
                .await;
                assert_eq!(probe.drops(), 1, "round {round}: buffer dropped twice");
                assert_eq!(in_flight(), before, "round {round}: op slot not freed");
                assert_same(&probe.written(), &data[..128], "data in the dropped buffer");
                let (res, rest) = stream.read_exact(Vec::with_capacity(10)).await;
                res.expect("read the rest");
                assert_same(&rest, &data[128..], "bytes after the dropped read");
            }
        })
    });
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// A bound TCP socket that does not listen: connecting to it is refused.
struct BoundNotListening {
    fd: libc::c_int,
    addr: SocketAddr,
}

impl BoundNotListening {
    fn new() -> BoundNotListening {
        // SAFETY: plain syscalls on a socket this function owns; the
        // sockaddr_in is a live local of the size passed.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
            let mut sin: libc::sockaddr_in = std::mem::zeroed();
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
            let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let rc = libc::bind(fd, (&sin as *const libc::sockaddr_in).cast(), len);
            assert_eq!(rc, 0, "bind: {}", io::Error::last_os_error());
            let rc = libc::getsockname(fd, (&mut sin as *mut libc::sockaddr_in).cast(), &mut len);
            assert_eq!(rc, 0, "getsockname: {}", io::Error::last_os_error());
            let port = u16::from_be(sin.sin_port);
            BoundNotListening {
                fd,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
            }
        }
    }
}

impl Drop for BoundNotListening {
    fn drop(&mut self) {
        // SAFETY: this struct owns the descriptor.
        unsafe { libc::close(self.fd) };
    }
}

/// Connecting to a port where nobody listens is `ConnectionRefused` (the
/// port is held by a bound, non-listening socket, so nobody else can take
/// it meanwhile); binding an address held by a listener (ours or std's) is
/// `AddrInUse`; a name needing a lookup (`localhost:port`, `("localhost",
/// port)`) connects; an unparsable address, an empty address list and a
/// bad port are `InvalidInput`; a non-local address is `AddrNotAvailable`.
#[test]
fn connect_and_bind_errors_and_hostnames() {
    run(|| async {
        let closed = BoundNotListening::new();
        let err = TcpStream::connect(closed.addr)
            .await
            .expect_err("connect to a closed port");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
        assert_eq!(err.raw_os_error(), Some(libc::ECONNREFUSED));

        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local_addr");
        let err = TcpListener::bind(addr).expect_err("second bind");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("std bind");
        let err = TcpListener::bind(std_listener.local_addr().unwrap())
            .expect_err("bind over a std listener");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");

        let port = addr.port();
        let by_name = TcpStream::connect(format!("localhost:{port}"))
            .await
            .expect("connect to localhost:port");
        let (server, _) = listener.accept().await.expect("accept");
        assert_eq!(by_name.peer_addr().unwrap(), addr);
        let (res, _) = by_name.write_all(&b"hi"[..]).await;
        res.expect("write");
        let (res, got) = server.read_exact(Vec::with_capacity(2)).await;
        res.expect("read");
        assert_eq!(got, b"hi");
        let by_tuple = TcpStream::connect(("localhost", port))
            .await
            .expect("connect to (localhost, port)");
        assert_eq!(by_tuple.peer_addr().unwrap(), addr);
        let _ = listener.accept().await.expect("accept");

        let err = TcpStream::connect("not an address")
            .await
            .expect_err("connect to garbage");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err:?}");
        let none: &[SocketAddr] = &[];
        let err = TcpStream::connect(none)
            .await
            .expect_err("connect to no address");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err:?}");
        let err = TcpListener::bind("127.0.0.1:99999").expect_err("bind to a bad port");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err:?}");
        // 192.0.2.1 (TEST-NET-1) is not an address of this machine.
        let err = TcpListener::bind("192.0.2.1:0").expect_err("bind to a foreign address");
        assert_eq!(err.kind(), io::ErrorKind::AddrNotAvailable, "{err:?}");
    });
}

/// SIGPIPE deliveries seen by [`count_sigpipes`]'s handler.
static SIGPIPES: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_sigpipe(_: libc::c_int) {
    SIGPIPES.fetch_add(1, Ordering::SeqCst);
}

/// Installs a handler that counts SIGPIPEs. Rust programs start with
/// SIGPIPE ignored, which would hide a write that raises it; counting makes
/// such a write visible (with the default action the process would die).
fn count_sigpipes() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction is valid; the handler only touches an
        // atomic, which is async-signal-safe.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigpipe as extern "C" fn(libc::c_int) as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            let rc = libc::sigaction(libc::SIGPIPE, &sa, std::ptr::null_mut());
            assert_eq!(rc, 0, "sigaction: {}", io::Error::last_os_error());
        }
    });
}

/// A peer that resets the connection (`SO_LINGER` 0, then close) while we
/// `write_all` a large buffer in a loop makes that write fail with
/// `ConnectionReset` or `BrokenPipe`; later writes fail with `BrokenPipe`,
/// as errors and never as a SIGPIPE; another connection is unaffected.
#[test]
fn peer_reset_mid_write_is_an_error_on_that_stream_only() {
    count_sigpipes();
    run(|| async {
        let sigpipes_before = SIGPIPES.load(Ordering::SeqCst);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local_addr");
        let other = TcpStream::connect(addr).await.expect("connect");
        let (other_server, _) = listener.accept().await.expect("accept");
        let writer = Rc::new(TcpStream::connect(addr).await.expect("connect"));
        let (peer, _) = listener.accept().await.expect("accept");

        let task = {
            let writer = writer.clone();
            runtime::spawn(async move {
                let mut chunk = payload(3, 1 << 20);
                for i in 0..4096 {
                    let (res, b) = writer.write_all(chunk).await;
                    chunk = b;
                    if let Err(e) = res {
                        return (e, i);
                    }
                }
                panic!("4 GiB written to a reset connection without an error");
            })
        };
        // Let the writer get going, then reset.
        let (res, _) = peer.read_exact(Vec::with_capacity(256 * 1024)).await;
        res.expect("peer read");
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt reads a live linger struct of the size passed,
        // on a descriptor `peer` keeps open.
        let rc = unsafe {
            libc::setsockopt(
                peer.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "SO_LINGER: {}", io::Error::last_os_error());
        drop(peer);
        let (err, _) = task.await.expect("writer task");
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            ),
            "write to a reset peer: {err:?}"
        );
        // Writing on: errors, ending in BrokenPipe (the case that raises
        // SIGPIPE without MSG_NOSIGNAL).
        let mut saw_epipe = false;
        for _ in 0..4 {
            let (res, _) = writer.write(&b"more"[..]).await;
            let err = res.expect_err("write after a reset");
            assert!(
                matches!(
                    err.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                ),
                "{err:?}"
            );
            if err.kind() == io::ErrorKind::BrokenPipe {
                saw_epipe = true;
                break;
            }
        }
        assert!(saw_epipe, "writes after a reset never gave BrokenPipe");
        let (res, _) = writer.send(&b"more"[..]).await;
        assert_eq!(res.expect_err("send").kind(), io::ErrorKind::BrokenPipe);
        let (res, _) = writer.writev(vec![&b"more"[..]]).await;
        assert_eq!(res.expect_err("writev").kind(), io::ErrorKind::BrokenPipe);

        // The other connection still works both ways.
        let (res, _) = other.write_all(&b"ping"[..]).await;
        res.expect("other write");
        let (res, got) = other_server.read_exact(Vec::with_capacity(4)).await;
        res.expect("other read");
        assert_eq!(got, b"ping");
        let (res, _) = other_server.write_all(&b"pong"[..]).await;
        res.expect("other write back");
        let (res, got) = other.read_exact(Vec::with_capacity(4)).await;
        res.expect("other read back");
        assert_eq!(got, b"pong");
        assert_eq!(
            SIGPIPES.load(Ordering::SeqCst),
            sigpipes_before,
            "a write raised SIGPIPE"
        );
    });
}

/// Writing to a peer that closed normally ends in a `BrokenPipe` error,
/// never a SIGPIPE.
#[test]
fn write_after_peer_closed_is_broken_pipe_not_a_signal() {
    count_sigpipes();
    run(|| async {
        let sigpipes_before = SIGPIPES.load(Ordering::SeqCst);
        let (client, server) = tcp_pair().await;
        drop(server);
        let deadline = Instant::now() + WAIT;
        let err = loop {
            let (res, _) = client.write(&b"x"[..]).await;
            match res {
                Ok(_) => {
                    assert!(
                        Instant::now() < deadline,
                        "writes to a closed peer keep succeeding"
                    );
                    sleep(Duration::from_millis(1)).await;
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err:?}");
        assert_eq!(err.raw_os_error(), Some(libc::EPIPE));
        assert_eq!(
            SIGPIPES.load(Ordering::SeqCst),
            sigpipes_before,
            "a write raised SIGPIPE"
        );
    });
}

// ---------------------------------------------------------------------------
// read_exact, write_all, EOF, shutdown
// ---------------------------------------------------------------------------

/// `read_exact` fills a vector (after its prefix) to capacity across
/// several short writes of the peer, and a boxed slice too; it fails with
/// `UnexpectedEof` when the peer closes early, keeping the bytes it got.
#[test]
fn read_exact_fills_across_short_writes_and_reports_early_eof() {
    run(|| async {
        let (a, b) = tcp_pair().await;
        let chunks: Vec<Vec<u8>> = [3usize, 1, 500, 17, 4096, 2, 9000]
            .iter()
            .enumerate()
            .map(|(i, &n)| payload(200 + i as u64, n))
            .collect();
        let expected = chunks.concat();
        let writer = runtime::spawn(async move {
            for c in chunks {
                let (res, _) = a.write_all(c).await;
                res.expect("write chunk");
                // Give the reader a chance to see each chunk on its own.
                sleep(Duration::from_millis(2)).await;
            }
            a
        });
        let mut buf = Vec::with_capacity(3 + expected.len() - 100);
        buf.extend_from_slice(b"HDR");
        let (res, buf) = b.read_exact(buf).await;
        res.expect("read_exact into a vec");
        assert_eq!(buf.len(), buf.capacity());
        assert_eq!(&buf[..3], b"HDR");
        assert_same(
            &buf[3..],
            &expected[..expected.len() - 100],
            "read_exact vec",
        );
        let boxed: Box<[u8]> = vec![0u8; 100].into();
        let (res, boxed) = b.read_exact(boxed).await;
        res.expect("read_exact into a box");
        assert_same(&boxed, &expected[expected.len() - 100..], "read_exact box");
        let a = writer.await.expect("writer task");

        // Early EOF: 10 bytes, then the peer closes its side.
        let (res, _) = a.write_all(payload(9, 10)).await;
        res.expect("write 10");
        a.shutdown(Shutdown::Write).expect("shutdown");
        let (res, buf) = b.read_exact(Vec::with_capacity(100)).await;
        let err = res.expect_err("read_exact past EOF");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
        assert_eq!(buf, payload(9, 10), "the bytes before EOF are kept");
    });
}

/// `write_all` of 4 MiB against a reader that takes small bites (so the
/// writes come up short) delivers every byte in order; `read` then returns
/// 0 at EOF, repeatedly.
#[test]
fn write_all_4_mib_against_a_slow_reader() {
    const LEN: usize = 4 << 20;
    run(|| async {
        let (a, b) = tcp_pair().await;
        let data = payload(77, LEN);
        let writer = runtime::spawn(async move {
            let (res, data) = a.write_all(data).await;
            res.expect("write_all 4 MiB");
            a.shutdown(Shutdown::Write).expect("shutdown");
            (a, data)
        });
        let mut got: Vec<u8> = Vec::with_capacity(LEN);
        let mut reads = 0usize;
        loop {
            let bite = Vec::with_capacity(1000);
            let (res, bite) = b.read(bite).await;
            let n = res.expect("read");
            assert_eq!(n, bite.len());
            if n == 0 {
                break;
            }
            got.extend_from_slice(&bite);
            reads += 1;
            if reads % 256 == 0 {
                // Slow down now and then: the writer must wait for room.
                sleep(Duration::from_millis(1)).await;
            } else {
                runtime::yield_now().await;
            }
        }
        let (_a, data) = writer.await.expect("writer task");
        assert_same(&got, &data, "4 MiB through write_all");
        for _ in 0..3 {
            let (res, buf) = b.read(Vec::with_capacity(16)).await;
            assert_eq!(res.expect("read at EOF"), 0);
            assert!(buf.is_empty());
        }
    });
}

/// `shutdown(Write)` makes the peer read EOF while the other direction
/// keeps working (half-close); writing after it is `BrokenPipe`; a read
/// into a vector with no spare room returns 0 at once.
#[test]
fn shutdown_write_gives_the_peer_eof() {
    run(|| async {
        let (a, b) = tcp_pair().await;
        let (res, _) = a.write_all(&b"last words"[..]).await;
        res.expect("write");
        a.shutdown(Shutdown::Write).expect("shutdown(Write)");
        let got = read_to_end(&b, Vec::new()).await.expect("read to EOF");
        assert_eq!(got, b"last words");
        let (res, _) = b.read(Vec::with_capacity(8)).await;
        assert_eq!(res.expect("read at EOF"), 0);
        // The other direction still works.
        let (res, _) = b.write_all(&b"reply"[..]).await;
        res.expect("write back");
        let (res, got) = a.read_exact(Vec::with_capacity(5)).await;
        res.expect("read back");
        assert_eq!(got, b"reply");
        let (res, _) = a.write(&b"too late"[..]).await;
        assert_eq!(
            res.expect_err("write after shutdown(Write)").kind(),
            io::ErrorKind::BrokenPipe
        );
        // No room to read into: 0 bytes, without waiting for data.
        let full = Vec::with_capacity(0);
        let res = timeout(WAIT, b.read(full)).await;
        let (res, _) = res.expect("a read with no room must not wait");
        assert_eq!(res.expect("read with no room"), 0);
        b.shutdown(Shutdown::Both).expect("shutdown(Both)");
        let (res, _) = a.read(Vec::with_capacity(8)).await;
        assert_eq!(res.expect("read after the peer's shutdown(Both)"), 0);
    });
}

// ---------------------------------------------------------------------------
// Options, addresses, from_std, Debug
// ---------------------------------------------------------------------------

/// `set_nodelay`/`nodelay` round-trip; the addresses of both ends match;
/// `from_std` takes over a std listener and a std stream (in non-blocking
/// mode, which it switches off) and they work; `Debug` output names the
/// types and does not panic, even for a closed peer.
#[test]
fn options_addresses_from_std_and_debug() {
    run(|| async {
        let (client, server) = tcp_pair().await;
        for on in [true, false, true] {
            client.set_nodelay(on).expect("set_nodelay");
            assert_eq!(client.nodelay().expect("nodelay"), on);
        }
        assert_eq!(client.peer_addr().unwrap(), server.local_addr().unwrap());
        assert_eq!(client.local_addr().unwrap(), server.peer_addr().unwrap());
        assert!(client.local_addr().unwrap().ip().is_loopback());

        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("std bind");
        std_listener.set_nonblocking(true).unwrap();
        let listener = TcpListener::from_std(std_listener);
        let addr = listener.local_addr().expect("local_addr");
        let std_stream = std::net::TcpStream::connect(addr).expect("std connect");
        std_stream.set_nonblocking(true).unwrap();
        let stream = TcpStream::from_std(std_stream);
        // SAFETY: F_GETFL reads the flags of a descriptor `stream` keeps open.
        let flags = unsafe { libc::fcntl(stream.as_raw_fd(), libc::F_GETFL) };
        assert!(flags >= 0);
        assert_eq!(
            flags & libc::O_NONBLOCK,
            0,
            "from_std switches to blocking mode"
        );
        let (accepted, peer) = listener
            .accept()
            .await
            .expect("accept on from_std listener");
        assert_eq!(peer, stream.local_addr().unwrap());
        let (res, _) = stream.write_all(&b"std"[..]).await;
        res.expect("write on from_std stream");
        let (res, got) = accepted.read_exact(Vec::with_capacity(3)).await;
        res.expect("read");
        assert_eq!(got, b"std");

        let text = format!("{listener:?} {stream:?} {:?}", listener.incoming());
        assert!(text.contains("TcpListener"), "{text}");
        assert!(text.contains("TcpStream"), "{text}");
        assert!(text.contains("Incoming"), "{text}");
        drop(accepted);
        drop(server);
        let _ = format!("{client:?} {stream:?}");
        let _ = format!("{:#?}", client);
    });
}

// ---------------------------------------------------------------------------
// Generic code over the stream traits
// ---------------------------------------------------------------------------

/// Sends `data` from `a` to `b` and back using only the `runtime::io`
/// traits: `write_all`/`read_exact` one way, `writev`/`readv` the other.
async fn exchange_generic<S: OwnedRead + OwnedWrite>(a: &S, b: &S, data: &[u8]) {
    let (res, _) = OwnedWrite::write_all(a, data.to_vec()).await;
    res.expect("write_all");
    let (res, got) = OwnedRead::read_exact(b, Vec::with_capacity(data.len())).await;
    res.expect("read_exact");
    assert_same(&got, data, "generic write_all/read_exact");

    let half = data.len() / 2;
    let (res, _) = OwnedWrite::writev(b, vec![data[..half].to_vec(), data[half..].to_vec()]).await;
    let n = res.expect("writev");
    if n < data.len() {
        let (res, _) = OwnedWrite::write_all(b, data[n..].to_vec()).await;
        res.expect("write_all the rest");
    }
    let mut got = Vec::with_capacity(data.len());
    while got.len() < data.len() {
        let room = data.len() - got.len();
        let (res, bufs) = OwnedRead::readv(a, vec![Vec::with_capacity(room)]).await;
        assert!(res.expect("readv") > 0, "EOF in the middle");
        got.extend_from_slice(&bufs[0]);
    }
    assert_same(&got, data, "generic writev/readv");
    let (res, _) = OwnedWrite::write(a, &b"!"[..]).await;
    assert_eq!(res.expect("write"), 1);
    let (res, got) = OwnedRead::read(b, Vec::with_capacity(1)).await;
    assert_eq!(res.expect("read"), 1);
    assert_eq!(got, b"!");
}

/// The same generic function (bounded by `OwnedRead + OwnedWrite`) works
/// with a `TcpStream` pair and a `UnixStream` pair.
#[test]
fn generic_code_over_owned_read_and_write() {
    run(|| async {
        let data = payload(42, 100_000);
        let (a, b) = tcp_pair().await;
        exchange_generic(&a, &b, &data).await;
        let (a, b) = UnixStream::pair().expect("unix pair");
        exchange_generic(&a, &b, &data).await;
    });
}

// ---------------------------------------------------------------------------
// Descriptors and concurrency
// ---------------------------------------------------------------------------

/// 200 connect/accept/exchange/drop cycles, and 50 refused connects, leave
/// the number of open descriptors unchanged once the runtime has finished
/// the asynchronous closes (`in_flight()` back to zero). Runs alone: it
/// takes the exclusive side of the lock the other tests share.
#[test]
fn no_descriptor_leak_over_200_connections() {
    with_deadline(LIMIT, || {
        let _alone = FD_COUNT_LOCK
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let rt = Runtime::new().expect("cannot start the runtime");
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().unwrap();
            let closed = BoundNotListening::new();
            wait_until("no op in flight", || in_flight() == 0).await;
            let before = open_fds();
            for i in 0..200u32 {
                let client = TcpStream::connect(addr).await.expect("connect");
                let (server, _) = listener.accept().await.expect("accept");
                let (res, _) = client.write_all(i.to_le_bytes().to_vec()).await;
                res.expect("write");
                let (res, got) = server.read_exact(Vec::with_capacity(4)).await;
                res.expect("read");
                assert_eq!(got, i.to_le_bytes());
                if i % 2 == 0 {
                    drop(client);
                    drop(server);
                } else {
                    drop(server);
                    drop(client);
                }
            }
            for _ in 0..50 {
                TcpStream::connect(closed.addr)
                    .await
                    .expect_err("connect to a closed port");
            }
            wait_until("the asynchronous closes to finish", || in_flight() == 0).await;
            let after = open_fds();
            assert_eq!(
                after, before,
                "descriptors leaked: {before} before, {after} after"
            );
        });
    });
}

/// One task reads while another writes on the same stream (`&self`
/// methods): 4 MiB through an echo server, more than the socket buffers
/// hold, so the writer would stall for good if the read could not run
/// while a write is in flight. Every byte comes back in order.
#[test]
fn concurrent_read_and_write_on_one_stream() {
    const LEN: usize = 4 << 20;
    run(|| async {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().unwrap();
        let server = runtime::spawn(async move {
            let (s, _) = listener.accept().await.expect("accept");
            echo_conn(s).await.expect("echo")
        });
        let stream = Rc::new(TcpStream::connect(addr).await.expect("connect"));
        let data = payload(5, LEN);
        let writes_done = Rc::new(Cell::new(0usize));
        let writer = {
            let stream = stream.clone();
            let data = data.clone();
            let writes_done = writes_done.clone();
            runtime::spawn(async move {
                for chunk in data.chunks(256 * 1024) {
                    let (res, _) = stream.write_all(chunk.to_vec()).await;
                    res.expect("write_all");
                    writes_done.set(writes_done.get() + 1);
                }
                stream.shutdown(Shutdown::Write).expect("shutdown");
            })
        };
        let reader = {
            let stream = stream.clone();
            runtime::spawn(async move { read_to_end(&*stream, Vec::new()).await })
        };
        let got = reader.await.expect("reader task").expect("read");
        writer.await.expect("writer task");
        assert_eq!(writes_done.get(), LEN / (256 * 1024));
        assert_same(&got, &data, "echo of 4 MiB");
        assert_eq!(server.await.expect("server task"), LEN);
    });
}

/// `read_timeout`: nothing arrives → `TimedOut` with the buffer back as it
/// was; data within the deadline → the data; the connection still works
/// after a timeout and nothing is left in flight.
#[test]
fn read_timeout_gives_the_buffer_back() {
    run(|| async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // The kernel completes the handshake from the backlog: connect
        // returns before accept is called.
        let client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();

        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(b"kept");
        let (res, buf) = server.read_timeout(buf, Duration::from_millis(20)).await;
        assert_eq!(res.unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert_eq!(&buf[..], b"kept", "a timed-out read changed the buffer");
        assert_eq!(buf.capacity(), 64);

        let (res, _) = client.write_all(b"hello".to_vec()).await;
        res.unwrap();
        let (res, buf) = server.read_timeout(buf, WAIT).await;
        assert_eq!(res.unwrap(), 5);
        assert_eq!(&buf[..], b"kepthello");

        // Many short timed reads: each one's slot and link timeout go away.
        let mut buf = buf;
        for _ in 0..50 {
            let (res, b) = server.read_timeout(buf, Duration::from_micros(200)).await;
            assert_eq!(res.unwrap_err().kind(), io::ErrorKind::TimedOut);
            buf = b;
        }
        for _ in 0..100 {
            if in_flight() == 0 {
                break;
            }
            sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(in_flight(), 0, "timed reads left ops in flight");
    });
}

/// An expired `read_timeout` is `TimedOut` with a message naming the
/// deadline and the kernel facility (not the bare "Connection timed out
/// (os error 110)", which reads as a dead connection); the kernel's
/// `ETIMEDOUT` is its source. Same on a Unix stream.
#[test]
fn read_timeout_error_names_the_deadline() {
    run(|| async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (res, _) = server
            .read_timeout(Vec::with_capacity(8), Duration::from_millis(5))
            .await;
        let err = res.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(
            err.to_string(),
            "read timed out after 5ms (IORING_OP_LINK_TIMEOUT)"
        );
        assert_eq!(err.raw_os_error(), None);
        let source = std::error::Error::source(&err)
            .and_then(|s| s.downcast_ref::<io::Error>())
            .expect("the kernel's error as the source");
        assert_eq!(source.raw_os_error(), Some(libc::ETIMEDOUT));

        let (a, _b) = UnixStream::pair().unwrap();
        let (res, _) = a
            .read_timeout(Vec::with_capacity(8), Duration::from_micros(1500))
            .await;
        let err = res.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(
            err.to_string(),
            "read timed out after 1.5ms (IORING_OP_LINK_TIMEOUT)"
        );
    });
}
