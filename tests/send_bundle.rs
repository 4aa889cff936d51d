//! Integration tests of send queues (`send_queue` on `TcpStream` and
//! `UnixStream`): many buffers out with one send SQE (send bundles,
//! Linux 6.10+) or, forced, with vectored sends; the peer must receive
//! exactly the concatenation in order. Also: a full queue, a `flush`
//! dropped mid-flight (no memory error, nothing resent or skipped, no op
//! left behind), and a closed peer (an error, no hang).
//!
//! The peer is a plain std socket read on its own thread. Every test runs
//! under a deadline (a hang is a failure); waits are bounded, and no
//! verdict depends on timing.

use std::io::{self, Read};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use integration_tests::{on_runtime, payload};

const LIMIT: Duration = Duration::from_secs(60);

/// Reads `peer` to EOF on a thread, `chunk` bytes at a time, after `go`
/// fires (or at once if `go` is `None`), pausing every `pause_every` reads
/// (0: never) to be a slow reader.
fn reader<R: Read + Send + 'static>(
    mut peer: R,
    chunk: usize,
    pause_every: usize,
    go: Option<mpsc::Receiver<()>>,
) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        if let Some(go) = go {
            let _ = go.recv();
        }
        let mut got = Vec::new();
        let mut buf = vec![0u8; chunk];
        let mut reads = 0usize;
        loop {
            match peer.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => panic!("peer read failed: {e}"),
            }
            reads += 1;
            if pause_every != 0 && reads % pause_every == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        got
    })
}

/// Waits for the reader thread without blocking the runtime.
async fn join(rd: JoinHandle<Vec<u8>>) -> Vec<u8> {
    runtime::spawn_blocking(move || rd.join().expect("reader thread panicked"))
        .await
        .expect("join task")
}

/// A connected TCP pair: ours (on the runtime) and the std peer.
fn tcp_pair() -> (net::TcpStream, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let ours = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (peer, _) = listener.accept().unwrap();
    (net::TcpStream::from_std(ours), peer)
}

/// A connected Unix stream pair: ours and the std peer.
fn unix_pair() -> (net::UnixStream, std::os::unix::net::UnixStream) {
    let (ours, peer) = std::os::unix::net::UnixStream::pair().unwrap();
    (net::UnixStream::from_std(ours), peer)
}

/// Buffers of the given sizes, each its own payload; and their
/// concatenation.
fn buffers(seed: u64, sizes: &[usize]) -> (Vec<Vec<u8>>, Vec<u8>) {
    let bufs: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| payload(seed + i as u64, n))
        .collect();
    let all = bufs.concat();
    (bufs, all)
}

/// Pushes every buffer (the queue must have room), flushes, and returns
/// the number of SQEs the runtime submitted and of CQEs it reaped during
/// the flush.
macro_rules! push_and_flush {
    ($q:expr, $bufs:expr) => {{
        let q = &mut $q;
        let mut bytes = 0;
        for b in $bufs {
            bytes += b.len();
            q.push(b).expect("room in the queue");
        }
        assert_eq!(q.queued_bytes(), bytes);
        let before = runtime::metrics();
        let sent = q.flush().await.expect("flush");
        let after = runtime::metrics();
        assert_eq!(sent, bytes, "flush returns the bytes queued");
        assert_eq!((q.queued(), q.queued_bytes()), (0, 0));
        (
            after.ops_submitted - before.ops_submitted,
            after.cqes_reaped - before.cqes_reaped,
        )
    }};
}

#[test]
fn bundles_are_available_here() {
    // The rest of the tests check the bundle path only where the kernel
    // has it; make it visible when it does not.
    on_runtime(LIMIT, || async {
        let (a, _b) = unix_pair();
        let q = a.send_queue(8).unwrap();
        assert_eq!(q.uses_bundles(), runtime::features().recv_bundle);
        if !q.uses_bundles() {
            eprintln!("note: no send bundles on this kernel; vectored sends only");
        }
    });
}

fn tcp_many_small(bundles: bool) {
    on_runtime(LIMIT, move || async move {
        let (ours, peer) = tcp_pair();
        let rd = reader(peer, 64 * 1024, 0, None);
        let mut q = ours.send_queue(64).unwrap().bundles(bundles);
        let (bufs, all) = buffers(1, &[1024; 64]);
        let expect_bundles = bundles && runtime::features().recv_bundle;
        let (sqes, cqes) = push_and_flush!(q, bufs);
        // One SQE and one CQE for the 64 buffers (one bundle, or one
        // sendmsg), and no silent switch away from bundles.
        assert_eq!((sqes, cqes), (1, 1), "64 buffers of 1 KiB in one SQE");
        assert_eq!(q.uses_bundles(), expect_bundles);
        // Again, with mixed sizes, on the same queue.
        let sizes: Vec<usize> = (0..64).map(|i| 1 + (i * 997) % 3000).collect();
        let (bufs2, all2) = buffers(100, &sizes);
        let (sqes, cqes) = push_and_flush!(q, bufs2);
        assert_eq!((sqes, cqes), (1, 1));
        assert_eq!(q.uses_bundles(), expect_bundles);
        ours.shutdown(std::net::Shutdown::Write).unwrap();
        drop(q);
        drop(ours);
        let got = join(rd).await;
        assert_eq!(got.len(), all.len() + all2.len());
        assert!(
            got == [all, all2].concat(),
            "bytes differ from what was queued"
        );
    });
}

#[test]
fn tcp_64_small_buffers_one_bundle() {
    tcp_many_small(true);
}

#[test]
fn tcp_64_small_buffers_vectored_fallback() {
    tcp_many_small(false);
}

fn unix_mixed(bundles: bool) {
    on_runtime(LIMIT, move || async move {
        let (ours, peer) = unix_pair();
        let rd = reader(peer, 8192, 0, None);
        let mut q = ours.send_queue(1024).unwrap().bundles(bundles);
        assert_eq!(q.uses_bundles(), bundles && runtime::features().recv_bundle);
        // 700 buffers: more than one kernel round (256 per round).
        let sizes: Vec<usize> = (0..700).map(|i| 1 + (i * 37) % 700).collect();
        let (bufs, all) = buffers(7, &sizes);
        let (sqes, _cqes) = push_and_flush!(q, bufs);
        if q.uses_bundles() {
            assert_eq!(sqes, 1, "700 buffers in one bundle SQE");
        } else if runtime::features().driver == runtime::DriverKind::IoUring {
            assert_eq!(sqes, 1, "700 buffers in one sendmsg");
        } else {
            // A non-blocking sendmsg takes what the socket has room for;
            // the queue sends the rest with the next.
            assert!(sqes >= 1, "700 buffers in at least one sendmsg");
        }
        ours.shutdown(std::net::Shutdown::Write).unwrap();
        drop(q);
        drop(ours);
        let got = join(rd).await;
        assert!(got == all, "bytes differ ({} vs {})", got.len(), all.len());
    });
}

#[test]
fn unix_mixed_sizes_bundles() {
    unix_mixed(true);
}

#[test]
fn unix_mixed_sizes_vectored_fallback() {
    unix_mixed(false);
}

fn large_slow_reader(bundles: bool) {
    on_runtime(LIMIT, move || async move {
        let (ours, peer) = tcp_pair();
        // A slow reader: 4 KiB reads, a pause every 64 reads, so sends are
        // short and the kernel waits for room many times.
        let rd = reader(peer, 4096, 64, None);
        let mut q = ours.send_queue(256).unwrap().bundles(bundles);
        // 4 MiB in 64 KiB buffers, with odd small ones between.
        let sizes: Vec<usize> = (0..128)
            .map(|i| if i % 2 == 0 { 64 * 1024 } else { 1 + i * 13 })
            .collect();
        let (bufs, all) = buffers(3, &sizes);
        let mut total = 0;
        for b in bufs {
            total += b.len();
            q.push(b).unwrap();
        }
        assert_eq!(q.flush().await.unwrap(), total);
        assert_eq!(q.queued(), 0);
        assert_eq!(q.uses_bundles(), bundles && runtime::features().recv_bundle);
        ours.shutdown(std::net::Shutdown::Write).unwrap();
        drop(q);
        drop(ours);
        let got = join(rd).await;
        assert_eq!(got.len(), all.len());
        assert!(got == all, "large transfer corrupted");
    });
}

#[test]
fn tcp_large_total_slow_reader_bundles() {
    large_slow_reader(true);
}

#[test]
fn tcp_large_total_slow_reader_vectored_fallback() {
    large_slow_reader(false);
}

#[test]
fn full_queue_gives_the_buffer_back() {
    on_runtime(LIMIT, || async {
        let (ours, peer) = unix_pair();
        let rd = reader(peer, 4096, 0, None);
        let mut q = ours.send_queue(4).unwrap();
        for i in 0..4u8 {
            q.push(vec![i; 10]).unwrap();
        }
        let back = q.push(vec![9u8; 3]).unwrap_err();
        assert_eq!(back, vec![9u8; 3], "the rejected buffer comes back whole");
        // Empty buffers are accepted and take no room.
        q.push(Vec::<u8>::new()).unwrap();
        assert_eq!(q.queued(), 4);
        assert_eq!(q.flush().await.unwrap(), 40);
        // Room again after the flush.
        q.push(back).unwrap();
        assert_eq!(q.flush().await.unwrap(), 3);
        assert_eq!(
            ours.send_queue(3).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        ours.shutdown(std::net::Shutdown::Write).unwrap();
        drop(q);
        drop(ours);
        let got = join(rd).await;
        let mut want: Vec<u8> = (0..4u8).flat_map(|i| vec![i; 10]).collect();
        want.extend_from_slice(&[9, 9, 9]);
        assert_eq!(got, want);
    });
}

/// 8 MiB in 128 buffers of 64 KiB.
fn big_queue() -> (Vec<Vec<u8>>, Vec<u8>) {
    buffers(11, &[64 * 1024; 128])
}

/// Queues 8 MiB on `$ours`, whose peer does not read yet, and drops the
/// flush once it is surely stuck (the send stays in flight); checks that
/// the runtime keeps working. Evaluates to the queue and the bytes.
macro_rules! stuck_flush {
    ($ours:expr, $bundles:expr) => {{
        let mut q = $ours.send_queue(128).unwrap().bundles($bundles);
        let (bufs, all) = big_queue();
        for b in bufs {
            q.push(b).unwrap();
        }
        let res = runtime::time::timeout(Duration::from_millis(50), q.flush()).await;
        assert!(res.is_err(), "8 MiB flushed to a peer that does not read?");
        assert!(
            runtime::op::in_flight() >= 1,
            "the send goes on after the flush is dropped"
        );
        // The runtime keeps working meanwhile.
        let t = runtime::spawn(async { 7 });
        assert_eq!(t.await.unwrap(), 7);
        runtime::time::sleep(Duration::from_millis(1)).await;
        (q, all)
    }};
}

/// Waits (bounded: short sleeps) until no op is in flight.
async fn no_op_left(what: &str) {
    for _ in 0..2000 {
        if runtime::op::in_flight() == 0 {
            return;
        }
        runtime::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{what}: {} ops still in flight", runtime::op::in_flight());
}

fn dropped_flush_then_flush_again(bundles: bool) {
    on_runtime(LIMIT, move || async move {
        let (ours, peer) = unix_pair();
        let (go, wait) = mpsc::channel();
        let rd = reader(peer, 64 * 1024, 0, Some(wait));
        let (mut q, all) = stuck_flush!(ours, bundles);
        // Part of it may be sent already; the next flush finishes the job
        // without resending or skipping anything.
        go.send(()).unwrap();
        let left = q.queued_bytes();
        assert!(left > 0 && left <= all.len());
        assert_eq!(q.flush().await.unwrap(), left);
        assert_eq!(q.queued(), 0);
        no_op_left("after the second flush").await;
        ours.shutdown(std::net::Shutdown::Write).unwrap();
        drop(q);
        drop(ours);
        let got = join(rd).await;
        assert_eq!(got.len(), all.len(), "bytes lost or sent twice");
        assert!(got == all, "bytes reordered or corrupted");
    });
}

#[test]
fn unix_dropped_flush_then_flush_again_bundles() {
    dropped_flush_then_flush_again(true);
}

#[test]
fn unix_dropped_flush_then_flush_again_vectored() {
    dropped_flush_then_flush_again(false);
}

fn dropped_flush_then_drop_queue(bundles: bool, close_peer: bool) {
    on_runtime(LIMIT, move || async move {
        let (ours, peer) = tcp_pair();
        let (go, wait) = mpsc::channel::<()>();
        let rd = if close_peer {
            drop(wait);
            None
        } else {
            Some(reader(peer.try_clone().unwrap(), 64 * 1024, 0, Some(wait)))
        };
        let (q, all) = stuck_flush!(ours, bundles);
        // Drop the queue with its send in flight: the runtime cancels it
        // and keeps the ring and the buffers until the kernel is done.
        drop(q);
        drop(ours);
        if close_peer {
            drop(peer);
        } else {
            go.send(()).unwrap();
            drop(peer);
        }
        no_op_left("after dropping the queue").await;
        // Still working.
        runtime::time::sleep(Duration::from_millis(1)).await;
        if let Some(rd) = rd {
            let got = join(rd).await;
            assert!(got.len() <= all.len());
            assert!(got == all[..got.len()], "what arrived is not a prefix");
        }
    });
}

#[test]
fn tcp_dropped_flush_then_dropped_queue_peer_reads() {
    dropped_flush_then_drop_queue(true, false);
    dropped_flush_then_drop_queue(false, false);
}

#[test]
fn tcp_dropped_flush_then_dropped_queue_peer_closes() {
    dropped_flush_then_drop_queue(true, true);
    dropped_flush_then_drop_queue(false, true);
}

/// Flushes 8 MiB at a peer that closed: an error comes (bounded number
/// of flushes), then every later flush fails too, and no op is left.
macro_rules! closed_peer {
    ($ours:expr, $bundles:expr) => {{
        let mut q = $ours.send_queue(128).unwrap().bundles($bundles);
        let mut err = None;
        for _ in 0..20 {
            let (bufs, _) = big_queue();
            for b in bufs {
                if q.push(b).is_err() {
                    break;
                }
            }
            match q.flush().await {
                Ok(_) => continue,
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        let err = err.expect("flushing to a closed peer never failed");
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ),
            "unexpected error {err:?}"
        );
        assert!(
            q.queued_bytes() > 0,
            "bytes the peer never got are still queued"
        );
        assert!(q.flush().await.is_err(), "a second flush fails too");
        drop(q);
        no_op_left("after the failed flushes").await;
    }};
}

fn peer_closed(bundles: bool) {
    on_runtime(LIMIT, move || async move {
        let (ours, peer) = unix_pair();
        drop(peer);
        closed_peer!(ours, bundles);
        let (ours, peer) = tcp_pair();
        drop(peer);
        closed_peer!(ours, bundles);
    });
}

#[test]
fn peer_closed_flush_fails_bundles() {
    peer_closed(true);
}

#[test]
fn peer_closed_flush_fails_vectored() {
    peer_closed(false);
}
