//! Integration tests of provided buffer rings (`runtime::bufring`) and the
//! receives that select from them (`recv_multishot`, `recv_from_ring` on
//! `TcpStream` and `UnixStream`): echo verified byte for byte, the pool
//! running dry (no error, nothing lost or reordered), streams and runtimes
//! dropped with a receive in flight, and a thousand idle connections that
//! hold no buffer.
//!
//! Every test runs under `with_deadline`, so a hang is a failure. The only
//! waits are bounded; no verdict depends on timing.

use std::io::{self, Read, Write};
use std::time::Duration;

use integration_tests::{on_runtime, payload, with_deadline};
use net::{TcpListener, TcpStream, UnixStream};
use runtime::bufring::BufRing;
use runtime::Runtime;

const LIMIT: Duration = Duration::from_secs(60);

/// Waits (bounded: yields, then short sleeps) until `cond` holds.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for i in 0..2000 {
        if cond() {
            return;
        }
        if i < 100 {
            runtime::yield_now().await;
        } else {
            runtime::time::sleep(Duration::from_millis(5)).await;
        }
    }
    panic!("{what}: still false after the bounded wait");
}

/// Sizes of the messages the echo tests send: varied, some larger than a
/// ring buffer so that one message spans several chunks.
fn message_sizes() -> Vec<usize> {
    (0..2000).map(|i| 1 + (i * 37) % 700).collect()
}

/// Echoes everything `recv` yields back with `write`, until EOF.
macro_rules! echo_server {
    ($stream:expr, $ring:expr) => {{
        let stream = $stream;
        let ring = $ring;
        async move {
            let mut chunks = stream.recv_multishot(&ring);
            let mut total = 0usize;
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.expect("recv_multishot yielded an error");
                assert!(!chunk.is_empty(), "an empty chunk before EOF");
                assert!(chunk.len() <= ring.buf_size());
                total += chunk.len();
                let (res, _) = stream.write_all(chunk.to_vec()).await;
                res.expect("echo write");
            }
            total
        }
    }};
}

#[test]
fn tcp_echo_through_multishot_recv() {
    if integration_tests::skip_on_epoll("provided-buffer rings are io_uring's") {
        return;
    }
    on_runtime(LIMIT, || async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let ring = BufRing::builder()
            .entries(16)
            .buf_size(512)
            .build()
            .unwrap();
        let server = runtime::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            echo_server!(stream, ring).await
        });
        let client = std::rc::Rc::new(TcpStream::connect(addr).await.unwrap());
        let sizes = message_sizes();
        let expected: Vec<u8> = sizes
            .iter()
            .enumerate()
            .flat_map(|(i, &n)| payload(i as u64, n))
            .collect();
        let writer = {
            let client = client.clone();
            let sizes = sizes.clone();
            runtime::spawn(async move {
                for (i, &n) in sizes.iter().enumerate() {
                    let (res, _) = client.write_all(payload(i as u64, n)).await;
                    res.unwrap();
                }
                client.shutdown(std::net::Shutdown::Write).unwrap();
            })
        };
        let mut got = Vec::with_capacity(expected.len());
        while got.len() < expected.len() {
            let (res, buf) = client.read(Vec::with_capacity(8192)).await;
            let n = res.unwrap();
            assert!(n > 0, "EOF after {} of {} bytes", got.len(), expected.len());
            got.extend_from_slice(&buf);
        }
        writer.await.unwrap();
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "echoed bytes differ from the sent ones");
        assert_eq!(server.await.unwrap(), expected.len());
    });
}

#[test]
fn unix_echo_through_multishot_recv() {
    if integration_tests::skip_on_epoll("provided-buffer rings are io_uring's") {
        return;
    }
    on_runtime(LIMIT, || async {
        let (server_side, client) = UnixStream::pair().unwrap();
        let ring = BufRing::builder().entries(8).buf_size(256).build().unwrap();
        let ring2 = ring.clone();
        let server = runtime::spawn(echo_server!(server_side, ring2));
        let client = std::rc::Rc::new(client);
        let sizes = message_sizes();
        let expected: Vec<u8> = sizes
            .iter()
            .enumerate()
            .flat_map(|(i, &n)| payload(i as u64 + 7, n))
            .collect();
        let writer = {
            let client = client.clone();
            runtime::spawn(async move {
                for (i, &n) in sizes.iter().enumerate() {
                    let (res, _) = client.write_all(payload(i as u64 + 7, n)).await;
                    res.unwrap();
                }
                client.shutdown(std::net::Shutdown::Write).unwrap();
            })
        };
        let mut got = Vec::with_capacity(expected.len());
        loop {
            let (res, buf) = client.read(Vec::with_capacity(8192)).await;
            if res.unwrap() == 0 {
                break;
            }
            got.extend_from_slice(&buf);
        }
        writer.await.unwrap();
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "echoed bytes differ from the sent ones");
        assert_eq!(server.await.unwrap(), expected.len());
        // Every chunk was dropped: all buffers are back with the kernel.
        assert_eq!(ring.held(), 0);
        assert_eq!(ring.available().unwrap(), 8);
    });
}

#[test]
fn exhausted_pool_pauses_without_error_or_loss() {
    if integration_tests::skip_on_epoll("provided-buffer rings are io_uring's") {
        return;
    }
    on_runtime(LIMIT, || async {
        let ring = BufRing::builder().entries(4).buf_size(16).build().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let data = payload(99, 1000);
        let (res, _) = b.write_all(data.clone()).await;
        res.unwrap();
        b.shutdown(std::net::Shutdown::Write).unwrap();

        let mut chunks = a.recv_multishot(&ring);
        let mut got: Vec<u8> = Vec::new();
        let mut held: Vec<runtime::bufring::BufRingChunk> = Vec::new();
        let mut exhaustions = 0;
        loop {
            if held.len() == ring.entries() as usize {
                // The user holds every buffer: the stream must wait, not
                // fail and not end.
                assert_eq!(ring.available().unwrap(), 0);
                let waited = runtime::time::timeout(Duration::from_millis(20), chunks.next()).await;
                match waited {
                    Err(_elapsed) => {}
                    Ok(other) => panic!(
                        "the stream went on with an empty pool: {:?}",
                        other.map(|r| r.map(|c| c.len()))
                    ),
                }
                exhaustions += 1;
                for c in held.drain(..) {
                    got.extend_from_slice(&c);
                }
            }
            match chunks.next().await {
                Some(chunk) => held.push(chunk.expect("no error while the pool is empty")),
                None => break,
            }
        }
        for c in held.drain(..) {
            got.extend_from_slice(&c);
        }
        assert!(
            exhaustions >= 10,
            "the pool ran dry only {exhaustions} times"
        );
        assert_eq!(got.len(), data.len(), "bytes lost");
        assert!(got == data, "bytes reordered or corrupted");
        assert_eq!(ring.held(), 0);
        assert_eq!(ring.available().unwrap(), 4);
    });
}

#[test]
fn two_streams_share_one_ring() {
    if integration_tests::skip_on_epoll("provided-buffer rings are io_uring's") {
        return;
    }
    on_runtime(LIMIT, || async {
        let ring = BufRing::builder().entries(4).buf_size(32).build().unwrap();
        let (a1, b1) = UnixStream::pair().unwrap();
        let (a2, b2) = UnixStream::pair().unwrap();
        let d1 = payload(1, 3000);
        let d2 = payload(2, 3000);
        for (b, d) in [(&b1, &d1), (&b2, &d2)] {
            let (res, _) = b.write_all(d.clone()).await;
            res.unwrap();
            b.shutdown(std::net::Shutdown::Write).unwrap();
        }
        let collect = |s: UnixStream, ring: BufRing| async move {
            let mut chunks = s.recv_multishot(&ring);
            let mut got = Vec::new();
            while let Some(c) = chunks.next().await {
                got.extend_from_slice(&c.unwrap());
                runtime::yield_now().await;
            }
            got
        };
        let t1 = runtime::spawn(collect(a1, ring.clone()));
        let t2 = runtime::spawn(collect(a2, ring.clone()));
        assert!(t1.await.unwrap() == d1);
        assert!(t2.await.unwrap() == d2);
        assert_eq!(ring.available().unwrap(), 4);
    });
}

#[test]
fn one_shot_recv_from_ring() {
    if integration_tests::skip_on_epoll("provided-buffer rings are io_uring's") {
        return;
    }
    on_runtime(LIMIT, || async {
        let ring = BufRing::builder().entries(2).buf_size(8).build().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let (res, _) = b.write_all(b"hello, ring".to_vec()).await;
        res.unwrap();
        let first = a.recv_from_ring(&ring).await.unwrap().expect("data");
        assert_eq!(&first[..], b"hello, r");
        let second = a.recv_from_ring(&ring).await.unwrap().expect("data");
        assert_eq!(&second[..], b"ing");
        assert_eq!(ring.held(), 2);
        // The pool is empty: the next receive waits for a buffer.
        let (res, _) = b.write_all(b"!".to_vec()).await;
        res.unwrap();
        let waited =
            runtime::time::timeout(Duration::from_millis(20), a.recv_from_ring(&ring)).await;
        assert!(waited.is_err(), "a receive succeeded with an empty pool");
        drop(first);
        let third = a.recv_from_ring(&ring).await.unwrap().expect("data");
        assert_eq!(&third[..], b"!");
        drop((second, third));
        drop(b);
        assert!(
            a.recv_from_ring(&ring).await.unwrap().is_none(),
            "EOF expected"
        );
        assert_eq!(ring.held(), 0);
        assert_eq!(ring.available().unwrap(), 2);
        // Every dropped receive gave its buffer back and its slot is gone.
        eventually("ops back to zero", || runtime::metrics().ops_in_flight == 0).await;
    });
}

#[test]
fn builder_rejects_bad_settings() {
    if integration_tests::skip_on_epoll("provided-buffer rings are io_uring's") {
        return;
    }
    on_runtime(LIMIT, || async {
        let e = BufRing::builder().entries(3).build().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let e = BufRing::builder().entries(1 << 16).build().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let e = BufRing::builder().buf_size(0).build().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let a = BufRing::builder().entries(2).build().unwrap();
        let b = BufRing::builder().entries(2).build().unwrap();
        assert_ne!(a.group_id(), b.group_id());
        let e = BufRing::builder()
            .entries(2)
            .group_id(a.group_id())
            .build()
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        // A freed group id can be registered again.
        let id = b.group_id();
        drop(b);
        let c = BufRing::builder().entries(2).group_id(id).build().unwrap();
        assert_eq!(c.group_id(), id);
    });
}

#[test]
fn stream_dropped_mid_flight_then_runtime_carries_on() {
    if integration_tests::skip_on_epoll("provided-buffer rings are io_uring's") {
        return;
    }
    on_runtime(LIMIT, || async {
        let ring = BufRing::builder().entries(8).buf_size(64).build().unwrap();
        // Let the ring settle (building a ring may submit an internal
        // operation) before taking the baseline.
        runtime::yield_now().await;
        let baseline = runtime::metrics().ops_in_flight;

        // 1. Dropped while armed and idle.
        let (a, peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let a = UnixStream::from_std(a);
        let mut chunks = a.recv_multishot(&ring);
        let waited = runtime::time::timeout(Duration::from_millis(5), chunks.next()).await;
        assert!(waited.is_err());
        drop(chunks);
        drop(a);

        // 2. Dropped with received chunks queued, not yet yielded: their
        // buffers must come back to the ring.
        let (c, d) = UnixStream::pair().unwrap();
        let mut chunks = c.recv_multishot(&ring);
        let (res, _) = d.write_all(payload(5, 64 * 5).to_vec()).await;
        res.unwrap();
        let first = chunks.next().await.unwrap().unwrap();
        assert_eq!(first.len(), 64);
        eventually("the kernel to fill more buffers", || {
            ring.available().unwrap() < 7
        })
        .await;
        drop(chunks);
        drop(first);
        eventually("every buffer back in the ring", || {
            ring.available().unwrap() == 8
        })
        .await;
        assert_eq!(ring.held(), 0);
        eventually("ops back to the baseline", || {
            runtime::metrics().ops_in_flight <= baseline
        })
        .await;

        // The socket of (1) was closed: its peer sees end of stream.
        peer.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut peer = peer;
        let mut buf = [0u8; 8];
        assert_eq!(peer.read(&mut buf).unwrap(), 0, "descriptor leaked");

        // The runtime and the ring still work.
        let (e, f) = UnixStream::pair().unwrap();
        let mut chunks = e.recv_multishot(&ring);
        let (res, _) = f.write_all(b"still here".to_vec()).await;
        res.unwrap();
        let chunk = chunks.next().await.unwrap().unwrap();
        assert_eq!(&chunk[..], b"still here");
    });
}

#[test]
fn runtime_dropped_with_multishot_in_flight() {
    if integration_tests::skip_on_epoll("provided-buffer rings are io_uring's") {
        return;
    }
    with_deadline(LIMIT, || {
        let (mut peer, leftovers) = {
            let rt = Runtime::new().unwrap();
            let (a, peer) = std::os::unix::net::UnixStream::pair().unwrap();
            let (c, peer2) = std::os::unix::net::UnixStream::pair().unwrap();
            let leftovers = rt.block_on(async move {
                let ring = BufRing::builder().entries(4).buf_size(32).build().unwrap();
                // A task that waits forever on a receive, dropped by the
                // runtime's shutdown.
                let a = UnixStream::from_std(a);
                let r = ring.clone();
                runtime::spawn(async move {
                    let mut chunks = a.recv_multishot(&r);
                    while let Some(c) = chunks.next().await {
                        drop(c);
                    }
                });
                // A stream that outlives the runtime, with chunks queued.
                let c = UnixStream::from_std(c);
                let mut chunks = c.recv_multishot(&ring);
                let mut peer2 = peer2;
                peer2.write_all(&payload(3, 100)).unwrap();
                // One chunk is kept past the runtime; more are queued.
                let kept = chunks.next().await.unwrap().unwrap();
                runtime::yield_now().await;
                (c, chunks, kept, ring, peer2)
            });
            drop(rt);
            (peer, leftovers)
        };
        // Dropped with no runtime on this thread: the stream (handing its
        // receive back), then the chunk (its buffer goes back to a ring
        // whose runtime is gone), then the ring.
        let (c, chunks, kept, ring, _peer2) = leftovers;
        assert_eq!(&kept[..], &payload(3, 100)[..32]);
        drop(chunks);
        drop(c);
        assert_eq!(ring.held(), 1);
        drop(kept);
        assert_eq!(ring.held(), 0);
        drop(ring);
        peer.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(peer.read(&mut buf).unwrap(), 0, "descriptor leaked");
    });
}

#[test]
fn idle_connections_hold_no_buffers() {
    if integration_tests::skip_on_epoll("provided-buffer rings are io_uring's") {
        return;
    }
    on_runtime(LIMIT, || async {
        const CONNS: usize = 1000;
        let ring = BufRing::builder()
            .entries(64)
            .buf_size(128)
            .build()
            .unwrap();
        // Let the ring settle (building a ring may submit an internal
        // operation) before taking the baseline.
        runtime::yield_now().await;
        let baseline = runtime::metrics().ops_in_flight;
        let mut peers = Vec::with_capacity(CONNS);
        let mut tasks = Vec::with_capacity(CONNS);
        for _ in 0..CONNS {
            let (a, b) = UnixStream::pair().unwrap();
            peers.push(b);
            let ring = ring.clone();
            tasks.push(runtime::spawn(async move {
                let mut chunks = a.recv_multishot(&ring);
                let mut got = Vec::new();
                while let Some(c) = chunks.next().await {
                    got.extend_from_slice(&c.unwrap());
                }
                got
            }));
        }
        eventually("every receive armed", || {
            runtime::metrics().ops_in_flight >= baseline + CONNS
        })
        .await;
        // A thousand receives in flight, and not one buffer taken.
        assert_eq!(ring.held(), 0);
        assert_eq!(ring.available().unwrap(), 64);

        // Every connection still works, through the same small pool.
        for (i, p) in peers.iter().enumerate() {
            let (res, _) = p.write_all(format!("conn {i}").into_bytes()).await;
            res.unwrap();
            p.shutdown(std::net::Shutdown::Write).unwrap();
        }
        for (i, t) in tasks.into_iter().enumerate() {
            assert_eq!(t.await.unwrap(), format!("conn {i}").into_bytes());
        }
        assert_eq!(ring.available().unwrap(), 64);
        eventually("ops back to the baseline", || {
            runtime::metrics().ops_in_flight <= baseline
        })
        .await;
    });
}

#[test]
fn bundle_receive_takes_several_buffers_per_cqe() {
    on_runtime(LIMIT, || async {
        if !runtime::features().recv_bundle {
            eprintln!("skipped: no IORING_RECVSEND_BUNDLE (Linux 6.10+)");
            return;
        }
        let ring = BufRing::builder().entries(16).buf_size(8).build().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let data = payload(11, 64);
        let (res, _) = b.write_all(data.clone()).await;
        res.unwrap();
        drop(b);
        let before = runtime::metrics().cqes_reaped;
        let mut chunks = a.recv_multishot(&ring);
        let mut got = Vec::new();
        let mut count = 0;
        while let Some(c) = chunks.next().await {
            let c = c.unwrap();
            assert_eq!(c.len(), 8, "each buffer of the bundle is full");
            got.extend_from_slice(&c);
            count += 1;
        }
        let cqes = runtime::metrics().cqes_reaped - before;
        assert!(got == data);
        assert_eq!(count, 8);
        // 64 bytes in one bundle CQE (plus the end of stream), not one CQE
        // per 8-byte buffer.
        assert!(cqes < 8, "{cqes} CQEs for 8 chunks: no bundles");
        assert_eq!(ring.available().unwrap(), 16);
    });
}

/// A chunk is an `IoBuf`: written back as it is (no copy), its buffer stays
/// out of the ring until the write has given it back and it is dropped.
#[test]
fn chunks_are_written_back_as_they_are() {
    if integration_tests::skip_on_epoll("provided-buffer rings are io_uring's") {
        return;
    }
    on_runtime(LIMIT, || async {
        let (server_side, client) = UnixStream::pair().unwrap();
        let ring = BufRing::builder().entries(4).buf_size(64).build().unwrap();
        let server = {
            let ring = ring.clone();
            runtime::spawn(async move {
                let mut chunks = server_side.recv_multishot(&ring);
                let mut total = 0usize;
                while let Some(chunk) = chunks.next().await {
                    let chunk = chunk.expect("recv_multishot yielded an error");
                    total += chunk.len();
                    let (res, chunk) = server_side.write_all(chunk).await;
                    res.expect("echo write");
                    // Still ours until dropped: not back in the ring.
                    assert!(ring.held() >= 1);
                    drop(chunk);
                }
                total
            })
        };
        let client = std::rc::Rc::new(client);
        let sent: Vec<u8> = (0..40).flat_map(|i| payload(i + 100, 100)).collect();
        let writer = {
            let client = client.clone();
            let sent = sent.clone();
            runtime::spawn(async move {
                for piece in sent.chunks(100) {
                    let (res, _) = client.write_all(piece.to_vec()).await;
                    res.unwrap();
                }
                client.shutdown(std::net::Shutdown::Write).unwrap();
            })
        };
        let mut got = Vec::with_capacity(sent.len());
        loop {
            let (res, buf) = client.read(Vec::with_capacity(4096)).await;
            if res.unwrap() == 0 {
                break;
            }
            got.extend_from_slice(&buf);
        }
        writer.await.unwrap();
        assert!(got == sent, "echoed bytes differ from the sent ones");
        assert_eq!(server.await.unwrap(), sent.len());
        assert_eq!(ring.held(), 0);
        assert_eq!(ring.available().unwrap(), 4);
    });
}

/// Receives 64 KiB sent in one go from another thread through
/// `recv_multishot` on a ring of 64-byte buffers, on a runtime whose
/// features are edited by `mask`; returns (chunks, SQEs submitted while
/// receiving) and checks the bytes.
fn receive_counting(mask: fn(&mut runtime::Features)) -> (usize, u64) {
    with_deadline(LIMIT, move || {
        let rt = Runtime::builder().mask_features(mask).build().unwrap();
        rt.block_on(async {
            let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
            let ours = UnixStream::from_std(ours);
            let data = payload(99, 64 * 1024);
            let sent = data.clone();
            // The writer closes only once everything was received (a
            // close while bytes are queued makes the stream finish with
            // single-shot receives, which would blur the count).
            let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
            let writer = std::thread::spawn(move || {
                let mut theirs = theirs;
                theirs.write_all(&sent).unwrap();
                let _ = done_rx.recv();
            });
            let ring = BufRing::builder().entries(64).buf_size(64).build().unwrap();
            let before = runtime::metrics().ops_submitted;
            let mut chunks = ours.recv_multishot(&ring);
            let (mut got, mut count) = (Vec::new(), 0);
            while let Some(chunk) = chunks.next().await {
                got.extend_from_slice(&chunk.unwrap());
                count += 1;
                if got.len() == data.len() {
                    let _ = done_tx.send(());
                }
            }
            let submitted = runtime::metrics().ops_submitted - before;
            writer.join().unwrap();
            assert!(got == data, "received bytes differ");
            drop(chunks);
            assert_eq!(ring.held(), 0);
            (count, submitted)
        })
    })
}

#[test]
fn without_multishot_receive_each_chunk_is_one_receive() {
    if integration_tests::skip_on_epoll("provided-buffer rings are io_uring's") {
        return;
    }
    // The kernel's multishot receive: a few SQEs for a thousand chunks.
    let (chunks, sqes) = receive_counting(|_| {});
    assert!(chunks >= 1024, "{chunks} chunks");
    assert!(sqes * 4 < chunks as u64, "{sqes} SQEs for {chunks} chunks");
    // The fallback: the same bytes, one single-shot receive per chunk.
    let (chunks, sqes) = receive_counting(|f| {
        f.multishot_recv = false;
        f.recv_bundle = false;
    });
    assert!(chunks >= 1024, "{chunks} chunks");
    assert!(sqes >= chunks as u64, "{sqes} SQEs for {chunks} chunks");
}

#[test]
fn without_buffer_rings_building_one_says_so() {
    with_deadline(LIMIT, || {
        let rt = Runtime::builder()
            .mask_features(|f| f.buffer_rings = false)
            .build()
            .unwrap();
        rt.block_on(async {
            let err = BufRing::builder()
                .entries(8)
                .buf_size(64)
                .build()
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::Unsupported);
            assert!(err.to_string().contains("read()"), "{err}");
        });
    });
}

#[test]
fn multishot_receive_without_bundles_survives_a_dry_ring() {
    if integration_tests::skip_on_epoll("provided-buffer rings are io_uring's") {
        return;
    }
    let (chunks, sqes) = receive_counting(|f| f.recv_bundle = false);
    assert!(chunks >= 1024, "{chunks} chunks");
    assert!(sqes < chunks as u64, "{sqes} SQEs for {chunks} chunks");
}

/// The peer shuts down while bytes are still queued: the stream gives
/// every byte, then its end (a multishot receive alone could wait for
/// a socket event that already happened; see `RecvMulti`).
#[test]
fn the_end_of_stream_arrives_when_the_peer_closes_with_bytes_queued() {
    if integration_tests::skip_on_epoll("provided-buffer rings are io_uring's") {
        return;
    }
    for bundles in [false, true] {
        for round in 0..20u64 {
            with_deadline(LIMIT, move || {
                let rt = Runtime::new().unwrap();
                rt.block_on(async move {
                    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
                    let ours = UnixStream::from_std(ours);
                    let data = payload(round, 32 * 1024);
                    let sent = data.clone();
                    let writer = std::thread::spawn(move || {
                        let mut theirs = theirs;
                        theirs.write_all(&sent).unwrap();
                    });
                    let ring = BufRing::builder().entries(64).buf_size(64).build().unwrap();
                    let mut chunks = ours.recv_multishot(&ring).bundles(bundles);
                    let mut got = Vec::new();
                    while let Some(chunk) = chunks.next().await {
                        got.extend_from_slice(&chunk.unwrap());
                    }
                    writer.join().unwrap();
                    assert!(got == data, "received bytes differ");
                })
            });
        }
    }
}
