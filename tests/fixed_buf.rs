//! Registered (fixed) buffers (`runtime::fixed`): `READ_FIXED` /
//! `WRITE_FIXED` on files and stream sockets, `SEND_ZC` with a fixed
//! buffer, pool exhaustion and waiting, several pools on one runtime,
//! dropped operations and a dropped runtime with fixed operations in
//! flight, the degraded (unregistered) path, forced both by the hidden
//! constructor and by `RLIMIT_MEMLOCK` for an unprivileged user (in a
//! re-executed child), and `File::write_all_at_synced` (a linked
//! `WRITE -> FSYNC`).

use std::cell::Cell;
use std::future::Future;
use std::io::{self, Read};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use integration_tests::with_deadline;
use net::{TcpListener, TcpStream, UnixStream};
use runtime::buf::IoBuf;
use runtime::fixed::{FixedBuf, FixedBufPool};
use runtime::time::{sleep, timeout};
use runtime::Runtime;

/// The limit of every test.
const LIMIT: Duration = Duration::from_secs(60);

/// Runs the future made by `make` on a fresh runtime under the deadline.
fn run<M, F>(make: M) -> F::Output
where
    M: FnOnce() -> F + Send + 'static,
    F: Future,
    F::Output: Send + 'static,
{
    integration_tests::on_runtime(LIMIT, make)
}

/// A recognisable byte pattern (not periodic in 256 bytes), shifted by
/// `seed`.
fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i + seed) * 7 + (i + seed) / 251) as u8)
        .collect()
}

/// A fresh temporary file path.
fn temp_path(name: &str) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("fixed-buf-{name}-{}-{n}", std::process::id()))
}

async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    let a = TcpStream::connect(addr).await.expect("connect");
    let (b, _) = listener.accept().await.expect("accept");
    (a, b)
}

/// A full buffer of `pattern(size, seed)`.
async fn filled(pool: &FixedBufPool, seed: usize) -> FixedBuf {
    let mut buf = pool.get().await;
    buf.extend_from_slice(&pattern(pool.buf_size(), seed));
    buf
}

/// Waits (bounded by the test's deadline) until no operation is tracked.
async fn ops_settle() {
    while runtime::op::in_flight() != 0 {
        sleep(Duration::from_millis(1)).await;
    }
}

/// Writes and reads back through `read_fixed_at` / `write_fixed_at` at
/// offsets 0 and 4096 + 7.
async fn file_round_trip(pool: FixedBufPool) {
    let path = temp_path("rw");
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .await
        .expect("open read-write");
    let size = pool.buf_size();
    for (seed, pos) in [(1usize, 0u64), (2, 4096 + 7)] {
        let buf = filled(&pool, seed).await;
        let (res, buf) = file.write_fixed_at(buf, pos).await;
        assert_eq!(res.expect("write_fixed_at"), size);
        assert!(
            buf[..] == pattern(size, seed)[..],
            "the write changed the buffer"
        );
        drop(buf);
        let (res, got) = file.read_fixed_at(pool.get().await, pos).await;
        assert_eq!(res.expect("read_fixed_at"), size);
        assert!(
            got[..] == pattern(size, seed)[..],
            "bytes read differ at {pos}"
        );
    }
    // A read appends after the length: half a buffer, then the rest.
    let mut half = pool.get().await;
    half.set_len(size / 2);
    half.fill(0xEE);
    let (res, got) = file.read_fixed_at(half, 4096 + 7).await;
    assert_eq!(res.expect("appending read"), size - size / 2);
    assert!(got[..size / 2].iter().all(|&b| b == 0xEE));
    assert!(got[size / 2..] == pattern(size, 2)[..size - size / 2]);
    drop(got);
    // The file as a whole, seen by std.
    let on_disk = std::fs::read(&path).expect("std read");
    assert_eq!(on_disk.len(), 4096 + 7 + size);
    assert!(on_disk[4096 + 7..] == pattern(size, 2)[..]);
    // A read at the end of the file reads nothing.
    let (res, got) = file
        .read_fixed_at(pool.get().await, on_disk.len() as u64)
        .await;
    assert_eq!(res.expect("read at eof"), 0);
    assert!(got.is_empty());
    drop(got);
    std::fs::remove_file(&path).expect("remove");
    assert_eq!(pool.available(), pool.count());
}

#[test]
fn file_write_then_read_fixed() {
    if integration_tests::skip_on_epoll(
        "it checks that buffers are registered, which is io_uring's",
    ) {
        return;
    }
    run(|| async {
        let pool = FixedBufPool::new(4, 64 * 1024).expect("pool");
        assert!(pool.is_registered(), "registration failed: {pool:?}");
        file_round_trip(pool).await;
        ops_settle().await; // the file's close
    });
}

/// A client task writes `rounds` buffers through `write_fixed` to an echo
/// task (which uses `read_fixed` / `write_fixed`) while the client reads
/// them back with `read_fixed`. Needs three buffers in the pool.
async fn echo<S: FixedStream>(pool: FixedBufPool, client: S, server: S, rounds: usize) {
    let server_pool = pool.clone();
    let echo = runtime::spawn(async move {
        let mut total = 0;
        loop {
            let (res, buf) = server.read_fixed(server_pool.get().await).await;
            match res.expect("server read_fixed") {
                0 => return total,
                n => total += n,
            }
            let mut buf = buf;
            let mut sent = 0;
            while sent < buf.len() {
                let len = buf.len();
                let (res, slice) = server.write_fixed(buf.slice(sent..len)).await;
                sent += res.expect("server write_fixed");
                buf = slice.into_inner();
            }
        }
    });
    let size = pool.buf_size();
    let client = Rc::new(client);
    let writer = {
        let (client, pool) = (client.clone(), pool.clone());
        runtime::spawn(async move {
            for round in 0..rounds {
                let mut buf = filled(&pool, round).await;
                let mut sent = 0;
                while sent < size {
                    let (res, slice) = client.write_fixed(buf.slice(sent..)).await;
                    let n = res.expect("client write_fixed");
                    assert!(n > 0, "a write took nothing");
                    sent += n;
                    buf = slice.into_inner();
                }
                assert!(
                    buf[..] == pattern(size, round)[..],
                    "the write changed the buffer"
                );
            }
            client.shutdown_write();
        })
    };
    let mut got = Vec::with_capacity(rounds * size);
    while got.len() < rounds * size {
        let (res, buf) = client.read_fixed(pool.get().await).await;
        assert!(res.expect("client read_fixed") > 0, "echo closed early");
        got.extend_from_slice(&buf);
    }
    writer.await.expect("writer task");
    for round in 0..rounds {
        assert!(
            got[round * size..(round + 1) * size] == pattern(size, round)[..],
            "round {round} differs"
        );
    }
    assert_eq!(echo.await.expect("echo task"), rounds * size);
    assert_eq!(pool.available(), pool.count());
}

/// The methods under test, over both stream types.
trait FixedStream: 'static {
    fn read_fixed(&self, buf: FixedBuf) -> impl Future<Output = (io::Result<usize>, FixedBuf)>;
    fn write_fixed<B: runtime::fixed::FixedIoBuf>(
        &self,
        buf: B,
    ) -> impl Future<Output = (io::Result<usize>, B)>;
    fn send_zc_fixed<B: runtime::fixed::FixedIoBuf>(
        &self,
        buf: B,
    ) -> impl Future<Output = (io::Result<usize>, B)>;
    fn shutdown_write(&self);
}

macro_rules! fixed_stream {
    ($ty:ty) => {
        impl FixedStream for $ty {
            fn read_fixed(
                &self,
                buf: FixedBuf,
            ) -> impl Future<Output = (io::Result<usize>, FixedBuf)> {
                <$ty>::read_fixed(self, buf)
            }
            fn write_fixed<B: runtime::fixed::FixedIoBuf>(
                &self,
                buf: B,
            ) -> impl Future<Output = (io::Result<usize>, B)> {
                <$ty>::write_fixed(self, buf)
            }
            fn send_zc_fixed<B: runtime::fixed::FixedIoBuf>(
                &self,
                buf: B,
            ) -> impl Future<Output = (io::Result<usize>, B)> {
                <$ty>::send_zc_fixed(self, buf)
            }
            fn shutdown_write(&self) {
                self.shutdown(std::net::Shutdown::Write).expect("shutdown");
            }
        }
    };
}
fixed_stream!(TcpStream);
fixed_stream!(UnixStream);

#[test]
fn tcp_echo_with_fixed_buffers() {
    if integration_tests::skip_on_epoll(
        "it checks that buffers are registered, which is io_uring's",
    ) {
        return;
    }
    run(|| async {
        let pool = FixedBufPool::new(4, 16 * 1024).expect("pool");
        assert!(pool.is_registered(), "registration failed: {pool:?}");
        let (a, b) = tcp_pair().await;
        echo(pool, a, b, 20).await;
        ops_settle().await;
    });
}

#[test]
fn unix_echo_with_fixed_buffers() {
    if integration_tests::skip_on_epoll(
        "it checks that buffers are registered, which is io_uring's",
    ) {
        return;
    }
    run(|| async {
        let pool = FixedBufPool::new(4, 16 * 1024).expect("pool");
        assert!(pool.is_registered(), "registration failed: {pool:?}");
        let (a, b) = UnixStream::pair().expect("pair");
        echo(pool, a, b, 20).await;
        ops_settle().await;
    });
}

/// Sends a full buffer of `size` bytes with `send_zc_fixed` (slices for
/// the rest after short sends) while a task reads it with a plain read.
async fn send_zc_whole<S: FixedStream + runtime::io::OwnedRead>(pool: &FixedBufPool, a: S, b: S) {
    let size = pool.buf_size();
    let b = Rc::new(b);
    let reader = {
        let b = b.clone();
        runtime::spawn(async move {
            let (res, got) = b.read_exact(Vec::with_capacity(size)).await;
            res.expect("read_exact");
            got
        })
    };
    let mut buf = filled(pool, 3).await;
    let mut sent = 0;
    while sent < size {
        let (res, slice) = a.send_zc_fixed(buf.slice(sent..)).await;
        let n = res.expect("send_zc_fixed");
        assert!(n > 0, "a send took nothing");
        sent += n;
        buf = slice.into_inner();
    }
    assert!(
        buf[..] == pattern(size, 3)[..],
        "the send changed the buffer"
    );
    let got = reader.await.expect("reader");
    assert!(got == pattern(size, 3), "received bytes differ");
}

#[test]
fn send_zc_fixed_64k_and_1m() {
    if integration_tests::skip_on_epoll(
        "it checks that buffers are registered, which is io_uring's",
    ) {
        return;
    }
    run(|| async {
        for size in [64 * 1024, 1024 * 1024] {
            let pool = FixedBufPool::new(1, size).expect("pool");
            assert!(pool.is_registered(), "registration failed: {pool:?}");
            let (a, b) = tcp_pair().await;
            send_zc_whole(&pool, a, b).await;
            // Unix sockets refuse zero copy: the fallback sends the bytes.
            let (a, b) = UnixStream::pair().expect("pair");
            send_zc_whole(&pool, a, b).await;
            assert_eq!(pool.available(), 1);
        }
        ops_settle().await;
    });
}

#[test]
fn exhaustion_try_get_none_and_get_waits() {
    run(|| async {
        let pool = FixedBufPool::new(2, 128).expect("pool");
        let a = pool.try_get().expect("first");
        let b = pool.get().await;
        assert_eq!(pool.available(), 0);
        assert!(pool.try_get().is_none());
        let got = Rc::new(Cell::new(false));
        let waiter = {
            let (pool, got) = (pool.clone(), got.clone());
            runtime::spawn(async move {
                let buf = pool.get().await;
                got.set(true);
                buf.capacity()
            })
        };
        // The waiter runs and finds the pool empty; it stays waiting.
        for _ in 0..10 {
            runtime::yield_now().await;
        }
        sleep(Duration::from_millis(5)).await;
        assert!(!got.get(), "get() returned with every buffer out");
        assert!(!waiter.is_finished());
        drop(a); // wakes it
        assert_eq!(waiter.await.expect("waiter"), 128);
        assert!(got.get());
        // A timed-out get leaves nothing behind.
        let pending = timeout(Duration::from_millis(5), pool.get()).await;
        assert!(pending.is_ok(), "the waiter's buffer came back");
        let held = pending.unwrap();
        assert!(timeout(Duration::from_millis(5), pool.get()).await.is_err());
        drop((b, held));
        assert_eq!(pool.available(), 2);
    });
}

#[test]
fn two_pools_on_one_runtime() {
    if integration_tests::skip_on_epoll(
        "it checks that buffers are registered, which is io_uring's",
    ) {
        return;
    }
    run(|| async {
        let small = FixedBufPool::new(3, 4096).expect("small pool");
        let big = FixedBufPool::new(3, 256 * 1024).expect("big pool");
        assert!(small.is_registered() && big.is_registered());
        let mut indices: Vec<u16> = Vec::new();
        let s: Vec<FixedBuf> = (0..3).map(|_| small.try_get().unwrap()).collect();
        let b: Vec<FixedBuf> = (0..3).map(|_| big.try_get().unwrap()).collect();
        for buf in s.iter().chain(&b) {
            indices.push(buf.buf_index().expect("registered"));
        }
        let mut sorted = indices.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 6, "slots shared between pools: {indices:?}");
        drop((s, b));
        // Interleaved I/O through both pools.
        let (x, y) = tcp_pair().await;
        echo(small.clone(), x, y, 5).await;
        file_round_trip(big.clone()).await;
        // A pool dropped gives its slots back; a new one can take them.
        drop(small);
        let third = FixedBufPool::new(3, 8192).expect("third pool");
        assert!(third.is_registered());
        file_round_trip(third).await;
        let (x, y) = UnixStream::pair().expect("pair");
        echo(big, x, y, 3).await;
        ops_settle().await;
    });
}

#[test]
fn dropped_read_fixed_corrupts_nothing() {
    if integration_tests::skip_on_epoll(
        "it checks that buffers are registered, which is io_uring's",
    ) {
        return;
    }
    run(|| async {
        let pool = FixedBufPool::new(4, 4096).expect("pool");
        // Two buffers hold known bytes while the read is dropped.
        let keep: Vec<FixedBuf> = vec![filled(&pool, 10).await, filled(&pool, 11).await];
        let (a, b) = tcp_pair().await;
        ops_settle().await; // the listener's close
                            // Nobody writes: the read is cut off and its future dropped.
        let res = timeout(Duration::from_millis(20), a.read_fixed(pool.get().await)).await;
        assert!(res.is_err(), "the read completed with nobody writing");
        // Now the peer writes; the cancelled read must not land anywhere.
        let (res, _) = b.write_all(pattern(3000, 5)).await;
        res.expect("peer write");
        ops_settle().await;
        assert_eq!(pool.available(), 2, "the dropped read's buffer came back");
        assert!(keep[0][..] == pattern(4096, 10)[..]);
        assert!(keep[1][..] == pattern(4096, 11)[..]);
        // The bytes are in the socket (the cancel won the race) unless the
        // read took them first; either way a new read sees no garbage.
        b.shutdown(std::net::Shutdown::Write).expect("shutdown");
        let mut got = Vec::new();
        loop {
            let (res, buf) = a.read_fixed(pool.get().await).await;
            if res.expect("read_fixed") == 0 {
                break;
            }
            got.extend_from_slice(&buf);
        }
        assert!(
            got.is_empty() || got == pattern(3000, 5),
            "{} unexpected bytes",
            got.len()
        );
        drop(keep);
        assert_eq!(pool.available(), 4);
        assert_eq!(runtime::op::in_flight(), 0);

        // A dropped read keeps its pool registered (and allocated) until
        // its last CQE, even when every handle on the pool is gone.
        let (a, b) = tcp_pair().await;
        let lone = FixedBufPool::new(1, 4096).expect("lone pool");
        let buf = lone.get().await;
        let slot = buf.buf_index().expect("registered");
        let res = timeout(Duration::from_millis(20), a.read_fixed(buf)).await;
        assert!(res.is_err(), "the read completed with nobody writing");
        drop(lone);
        // No ring turn since the drop: the read is still in the kernel.
        let probe = FixedBufPool::new(1, 4096).expect("probe pool");
        let probe_slot = probe.try_get().unwrap().buf_index();
        assert_ne!(
            probe_slot,
            Some(slot),
            "a slot reused while its read was in flight"
        );
        let (a2, b2) = tcp_pair().await;
        drop((a2, b2));
        ops_settle().await;
        let again = FixedBufPool::new(1, 4096).expect("pool after the read ended");
        assert_eq!(again.try_get().unwrap().buf_index(), Some(slot));
        drop((probe, again, a, b));
        ops_settle().await;
    });
}

/// A connected pair: ours on the runtime, the peer a plain std socket
/// (closed synchronously when dropped, also outside the runtime).
fn std_peer_pair() -> (TcpStream, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let ours = std::net::TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let (peer, _) = listener.accept().expect("accept");
    (TcpStream::from_std(ours), peer)
}

#[test]
fn runtime_dropped_with_fixed_ops_in_flight() {
    if integration_tests::skip_on_epoll(
        "it checks that buffers are registered, which is io_uring's",
    ) {
        return;
    }
    with_deadline(LIMIT, || {
        let rt = Runtime::new().expect("runtime");
        let (pool, read_peers, send_peers) = rt.block_on(async {
            // Sends of 1 MiB that nobody reads stay in flight.
            let pool = FixedBufPool::new(12, 1024 * 1024).expect("pool");
            assert!(pool.is_registered());
            let (mut read_peers, mut send_peers) = (Vec::new(), Vec::new());
            for i in 0..3 {
                // A read nobody answers.
                let (a, b) = std_peer_pair();
                let p = pool.clone();
                drop(runtime::spawn(async move {
                    let _ = a.read_fixed(p.get().await).await;
                }));
                read_peers.push(b);
                // Zero-copy and fixed writes nobody reads to the end.
                let (c, d) = std_peer_pair();
                let p = pool.clone();
                drop(runtime::spawn(async move {
                    let _ = c.send_zc_fixed(filled(&p, i).await).await;
                    let _ = c.write_fixed(filled(&p, i + 1).await).await;
                }));
                send_peers.push(d);
            }
            // Let every task submit its operation.
            for _ in 0..5 {
                runtime::yield_now().await;
            }
            sleep(Duration::from_millis(5)).await;
            assert!(runtime::op::in_flight() >= 6);
            assert!(pool.available() <= 6);
            (pool, read_peers, send_peers)
        });
        // Bytes the kernel still holds for a zero-copy send keep its
        // notification back until they are gone: reset those connections
        // (unread data makes the close a reset), so that the runtime's
        // shutdown sees every operation end instead of leaking them.
        drop(send_peers);
        drop(rt);
        // Shutdown waited for the kernel: every buffer came back.
        assert_eq!(pool.available(), pool.count());
        drop(read_peers);
        drop(pool); // empties its slots on the (still open) ring
    });
}

#[test]
fn degraded_pool_gives_the_same_bytes() {
    if integration_tests::skip_on_epoll(
        "it checks that buffers are registered, which is io_uring's",
    ) {
        return;
    }
    run(|| async {
        let pool = FixedBufPool::new_unregistered(4, 32 * 1024).expect("pool");
        assert!(!pool.is_registered());
        assert_eq!(pool.try_get().unwrap().buf_index(), None);
        file_round_trip(pool.clone()).await;
        let (a, b) = tcp_pair().await;
        echo(pool.clone(), a, b, 5).await;
        let (a, b) = UnixStream::pair().expect("pair");
        echo(pool.clone(), a, b, 5).await;
        let one = FixedBufPool::new_unregistered(1, 1024 * 1024).expect("pool");
        let (a, b) = tcp_pair().await;
        send_zc_whole(&one, a, b).await;
        ops_settle().await;
    });
}

#[test]
fn buffer_of_another_runtime_uses_the_plain_opcodes() {
    if integration_tests::skip_on_epoll(
        "it checks that buffers are registered, which is io_uring's",
    ) {
        return;
    }
    with_deadline(LIMIT, || {
        let first = Runtime::new().expect("first runtime");
        let pool = first.block_on(async { FixedBufPool::new(4, 8192).expect("pool") });
        assert!(pool.is_registered());
        // Its slots mean nothing on another ring: the ops there must not
        // name them, and still move the right bytes.
        let second = Runtime::new().expect("second runtime");
        second.block_on(async {
            file_round_trip(pool.clone()).await;
            let (a, b) = tcp_pair().await;
            echo(pool.clone(), a, b, 3).await;
            ops_settle().await;
        });
        drop(second);
        // And on its own runtime again, registered.
        first.block_on(async {
            let (a, b) = UnixStream::pair().expect("pair");
            echo(pool.clone(), a, b, 3).await;
        });
        drop(pool);
        drop(first);
    });
}

#[test]
fn pools_outside_a_runtime_and_bad_sizes_are_errors() {
    let e = FixedBufPool::new(1, 64).unwrap_err();
    assert!(e.to_string().contains("inside a runtime"), "{e}");
    run(|| async {
        assert_eq!(
            FixedBufPool::new(0, 64).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            FixedBufPool::new(4, 0).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        // More buffers than the table has slots: degraded, still working.
        let many = FixedBufPool::new(runtime::fixed::TABLE_SLOTS as usize + 1, 16).expect("pool");
        assert!(!many.is_registered());
        let mut buf = many.try_get().unwrap();
        buf.extend_from_slice(b"works");
        assert_eq!(&buf[..], b"works");
    });
}

#[test]
fn write_all_at_synced_lands_on_disk() {
    run(|| async {
        let path = temp_path("synced");
        let file = fs::File::create(&path).await.expect("create");
        let (res, buf) = file
            .write_all_at_synced(pattern(100_000, 1), 0, false)
            .await;
        res.expect("write_all_at_synced");
        assert_eq!(buf, pattern(100_000, 1));
        let (res, _) = file
            .write_all_at_synced(pattern(5000, 2), 50_000, true)
            .await;
        res.expect("write_all_at_synced datasync");
        // Large enough that the kernel may split it.
        let (res, _) = file
            .write_all_at_synced(pattern(8 << 20, 3), 200_000, true)
            .await;
        res.expect("large write_all_at_synced");
        // Nothing to write: only the sync.
        let (res, _) = file.write_all_at_synced(Vec::new(), 0, true).await;
        res.expect("empty write_all_at_synced");
        let mut want = pattern(100_000, 1);
        want[50_000..55_000].copy_from_slice(&pattern(5000, 2));
        want.resize(200_000, 0);
        want.extend_from_slice(&pattern(8 << 20, 3));
        let on_disk = std::fs::read(&path).expect("std read");
        assert!(on_disk == want, "file contents differ");
        // With a fixed buffer too.
        let pool = FixedBufPool::new(1, 4096).expect("pool");
        let buf = filled(&pool, 9).await;
        let (res, buf) = file.write_all_at_synced(buf, 0, true).await;
        res.expect("synced fixed buffer");
        drop(buf);
        assert!(std::fs::read(&path).expect("std read")[..4096] == pattern(4096, 9)[..]);
        std::fs::remove_file(&path).expect("remove");
        assert_eq!(runtime::op::in_flight(), 0);
    });
}

#[test]
fn write_all_at_synced_failed_write_skips_the_sync() {
    run(|| async {
        let path = temp_path("readonly");
        std::fs::write(&path, b"before").expect("std write");
        let file = fs::File::open(&path).await.expect("open read-only");
        let (res, buf) = file.write_all_at_synced(b"after".to_vec(), 0, true).await;
        let e = res.expect_err("a write on a read-only file");
        // The write's own error, not the cancelled fsync's ECANCELED.
        assert_eq!(e.raw_os_error(), Some(libc::EBADF), "{e}");
        assert_eq!(buf, b"after");
        assert_eq!(std::fs::read(&path).expect("std read"), b"before");
        // An offset out of range is refused before anything is submitted.
        let (res, _) = file
            .write_all_at_synced(b"x".to_vec(), u64::MAX, true)
            .await;
        assert_eq!(res.unwrap_err().kind(), io::ErrorKind::InvalidInput);
        std::fs::remove_file(&path).expect("remove");
        assert_eq!(runtime::op::in_flight(), 0);
    });
}

// ---- RLIMIT_MEMLOCK: registration refused, the pool degrades ----

const CHILD_ENV: &str = "FIXED_BUF_CHILD";
const PARENT_PID_ENV: &str = "FIXED_BUF_PARENT_PID";
const MARKER: &str = "fixed-buf-child-done";

/// Whether this process is the child the parent test started for
/// `scenario`.
fn child_is(scenario: &str) -> bool {
    // SAFETY: plain libc call.
    let ppid = unsafe { libc::getppid() };
    std::env::var(CHILD_ENV).ok().as_deref() == Some(scenario)
        && std::env::var(PARENT_PID_ENV).ok().as_deref() == Some(ppid.to_string().as_str())
}

/// Whether this process is a child started by a parent test.
fn is_child() -> bool {
    std::env::var(CHILD_ENV).is_ok()
}

/// The child: as an unprivileged user (no `CAP_IPC_LOCK`) under a small
/// `RLIMIT_MEMLOCK`, a pool larger than the limit degrades and works, a
/// small one still registers.
#[test]
fn memlock_child() {
    if !child_is("memlock") {
        return;
    }
    let limit: u64 = 256 * 1024;
    let rlim = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: plain libc calls with a live struct.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) }, 0);
    // A uid nobody else uses: the charge is per real user.
    let uid = 200_000 + std::process::id() % 100_000;
    // SAFETY: plain libc calls; glibc applies them to every thread.
    unsafe {
        assert_eq!(libc::setresgid(uid, uid, uid), 0, "setresgid");
        assert_eq!(libc::setresuid(uid, uid, uid), 0, "setresuid");
    }
    let rt = Runtime::new().expect("runtime under a small RLIMIT_MEMLOCK");
    rt.block_on(async {
        // 1 MiB of buffers cannot be charged to 256 KiB.
        let big = FixedBufPool::new(16, 64 * 1024).expect("pool");
        assert!(
            !big.is_registered(),
            "1 MiB registered under 256 KiB: {big:?}"
        );
        println!("big pool: {big:?}");
        let (a, b) = UnixStream::pair().expect("pair");
        echo(big.clone(), a, b, 3).await;
        // Four pages fit next to the ring.
        let small = FixedBufPool::new(4, 4096).expect("small pool");
        println!("small pool: {small:?}");
        assert!(
            small.is_registered(),
            "16 KiB refused under 256 KiB: {small:?}"
        );
        let (a, b) = UnixStream::pair().expect("pair");
        echo(small, a, b, 3).await;
        ops_settle().await;
    });
    drop(rt);
    println!("{MARKER}");
}

#[test]
fn memlock_limit_degrades_registration() {
    if integration_tests::skip_on_epoll(
        "it checks that buffers are registered, which is io_uring's",
    ) {
        return;
    }
    if is_child() {
        return;
    }
    // SAFETY: plain libc call.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: cannot switch to a fresh uid; skipped");
        return;
    }
    run_child("memlock_child", "memlock");
}

/// Runs the test `child_test` of this binary in a child process for
/// `scenario`; requires a success and the marker line, within `LIMIT`.
fn run_child(child_test: &str, scenario: &str) {
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(&exe)
        .args(["--exact", child_test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, scenario)
        .env(PARENT_PID_ENV, std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    let mut out_pipe = child.stdout.take().expect("stdout");
    let mut err_pipe = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out_pipe.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    let status = status.unwrap_or_else(|| panic!("child hung\nstdout:\n{out}\nstderr:\n{err}"));
    assert!(
        status.success() && out.contains(MARKER),
        "child failed ({status})\nstdout:\n{out}\nstderr:\n{err}"
    );
}

/// The child: under `RLIMIT_FSIZE` (with `SIGXFSZ` ignored), a write
/// crossing the limit is short (its fsync is cancelled), the rest is
/// retried by a second chain, which fails with `EFBIG`: that error comes
/// back, and the bytes below the limit are in the file.
#[test]
fn fsize_child() {
    if !child_is("fsize") {
        return;
    }
    let limit: u64 = 10_000;
    // SAFETY: plain libc calls; SIG_IGN for SIGXFSZ makes the write fail
    // with EFBIG instead of killing the process.
    unsafe {
        assert_ne!(libc::signal(libc::SIGXFSZ, libc::SIG_IGN), libc::SIG_ERR);
        let rlim = libc::rlimit {
            rlim_cur: limit,
            rlim_max: libc::RLIM_INFINITY,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &rlim), 0);
    }
    let path = temp_path("fsize");
    let rt = Runtime::new().expect("runtime");
    rt.block_on(async {
        let file = fs::File::create(&path).await.expect("create");
        let (res, buf) = file.write_all_at_synced(pattern(20_000, 4), 0, true).await;
        let e = res.expect_err("a write past RLIMIT_FSIZE");
        assert_eq!(e.raw_os_error(), Some(libc::EFBIG), "{e}");
        assert_eq!(buf, pattern(20_000, 4));
        // Below the limit: fine.
        let (res, _) = file.write_all_at_synced(pattern(5000, 5), 0, false).await;
        res.expect("a write under the limit");
        let mut want = pattern(20_000, 4);
        want.truncate(limit as usize);
        want[..5000].copy_from_slice(&pattern(5000, 5));
        assert!(
            std::fs::read(&path).expect("std read") == want,
            "file contents differ"
        );
        ops_settle().await;
    });
    drop(rt);
    std::fs::remove_file(&path).expect("remove");
    println!("{MARKER}");
}

#[test]
fn write_all_at_synced_short_write_then_error() {
    if is_child() {
        return;
    }
    run_child("fsize_child", "fsize");
}
