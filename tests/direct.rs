//! Integration tests of direct descriptors (registered files): sockets
//! accepted straight into the ring's file table (`accept_direct`,
//! `incoming_direct`), streams moved into it (`into_direct`), their slots
//! freed when dropped (also when the accept's future was dropped with a
//! connection already taken), a full table, and a direct stream used on a
//! runtime that does not own it.
//!
//! Every test runs under `with_deadline`, so a hang is a failure. The only
//! waits are bounded; no verdict depends on timing.

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use integration_tests::{connected_fds_on_port, on_runtime, payload, with_deadline};
use net::{DirectStream, TcpListener, TcpStream, UnixListener, UnixStream};
use runtime::buf::IoBuf;
use runtime::bufring::BufRing;
use runtime::Runtime;

const LIMIT: Duration = Duration::from_secs(60);

/// Echoes on a direct stream until EOF; returns the bytes echoed.
async fn echo(stream: DirectStream) -> io::Result<usize> {
    let mut total = 0;
    let mut buf = Vec::with_capacity(4096);
    loop {
        buf.clear();
        let (res, b) = stream.read(buf).await;
        let n = res?;
        if n == 0 {
            return Ok(total);
        }
        total += n;
        let (res, b) = stream.write_all(b).await;
        res?;
        buf = b;
    }
}

/// Sends `msgs` messages of varied sizes on `client` and checks each echo
/// byte for byte.
async fn check_echo(client: &TcpStream, seed: u64, msgs: usize) {
    for i in 0..msgs {
        let msg = payload(seed * 1000 + i as u64, 1 + (i * 131) % 3000);
        let (res, msg) = client.write_all(msg).await;
        res.unwrap();
        let (res, got) = client.read_exact(Vec::with_capacity(msg.len())).await;
        res.unwrap();
        assert_eq!(got, msg, "echo {i} of connection {seed} differs");
    }
}

#[test]
fn accept_direct_echoes_byte_for_byte() {
    if integration_tests::skip_on_epoll("direct descriptors are io_uring's") {
        return;
    }
    on_runtime(LIMIT, || async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut clients = Vec::new();
        let mut servers = Vec::new();
        let mut slots = Vec::new();
        for seed in 0..8u64 {
            let client = runtime::spawn(async move {
                let c = TcpStream::connect(addr).await.unwrap();
                check_echo(&c, seed, 200).await;
                c.local_addr().unwrap()
            });
            let (conn, peer) = listener.accept_direct().await.unwrap();
            assert!(conn.slot().unwrap() < runtime::op::direct_table().unwrap());
            assert_eq!(conn.peer_addr().unwrap(), peer);
            slots.push(conn.slot());
            servers.push(runtime::spawn(echo(conn)));
            clients.push((client, peer));
        }
        // The accepted connections have no descriptor in the process.
        assert_eq!(connected_fds_on_port(addr.port()), 0);
        // (The check sees ordinary accepted sockets: control.)
        let control = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert_eq!(connected_fds_on_port(addr.port()), 1);
        drop((control, accepted));
        slots.sort_unstable();
        slots.dedup();
        assert_eq!(slots.len(), 8, "every connection has its own slot");
        for (client, peer) in clients {
            assert_eq!(client.await.unwrap(), peer);
        }
        for s in servers {
            assert!(s.await.unwrap().unwrap() > 0);
        }
        assert_eq!(runtime::op::in_flight(), 0);
    });
}

#[test]
fn incoming_direct_serves_many_connections() {
    on_runtime(LIMIT, || async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let clients: Vec<_> = (0..50u64)
            .map(|seed| {
                runtime::spawn(async move {
                    let c = TcpStream::connect(addr).await.unwrap();
                    check_echo(&c, seed, 20).await;
                })
            })
            .collect();
        let mut incoming = listener.incoming_direct();
        let mut servers = Vec::new();
        for _ in 0..50 {
            let conn = incoming.next().await.unwrap().unwrap();
            assert_eq!(
                conn.peer_addr().unwrap_err().kind(),
                io::ErrorKind::NotConnected,
                "multishot accept reports no address"
            );
            servers.push(runtime::spawn(echo(conn)));
        }
        for c in clients {
            c.await.unwrap();
        }
        for s in servers {
            s.await.unwrap().unwrap();
        }
        drop(incoming);
        // Let the cancelled multishot accept finish.
        for _ in 0..100 {
            if runtime::op::in_flight() == 0 {
                break;
            }
            runtime::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(runtime::op::in_flight(), 0);
    });
}

#[test]
fn unix_direct_streams_echo_and_shut_down() {
    on_runtime(LIMIT, || async {
        let dir = std::env::temp_dir().join(format!("direct-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sock");
        let listener = UnixListener::bind(&path).unwrap();
        let p = path.clone();
        let client = runtime::spawn(async move {
            let c = UnixStream::connect(&p).await.unwrap();
            let msg = payload(7, 100_000);
            let (res, msg) = c.write_all(msg).await;
            res.unwrap();
            c.shutdown(Shutdown::Write).unwrap();
            let (res, got) = c.read_exact(Vec::with_capacity(msg.len())).await;
            res.unwrap();
            assert_eq!(got, msg);
            // The server shut its write side down after the echo: EOF.
            let (res, _) = c.read(Vec::with_capacity(1)).await;
            assert_eq!(res.unwrap(), 0);
        });
        let conn = listener.accept_direct().await.unwrap();
        assert_eq!(
            conn.peer_addr().unwrap_err().kind(),
            io::ErrorKind::NotConnected
        );
        let mut got = Vec::new();
        loop {
            let (res, buf) = conn.read(Vec::with_capacity(8192)).await;
            if res.unwrap() == 0 {
                break;
            }
            got.extend_from_slice(&buf);
        }
        let (res, _) = conn.write_all(got).await;
        res.unwrap();
        conn.shutdown(Shutdown::Write).unwrap();
        client.await.unwrap();
        conn.close().await.unwrap();
        // The second form: a multishot accept into the table.
        let p = path.clone();
        let client = runtime::spawn(async move {
            let c = UnixStream::connect(&p).await.unwrap();
            let (res, _) = c.write_all(b"x".to_vec()).await;
            res.unwrap();
        });
        let mut incoming = listener.incoming_direct();
        let conn = incoming.next().await.unwrap().unwrap();
        let (res, buf) = conn.read(Vec::with_capacity(4)).await;
        assert_eq!(res.unwrap(), 1);
        assert_eq!(buf, b"x");
        client.await.unwrap();
        drop(incoming);
        drop(conn);
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

#[test]
fn into_direct_moves_a_connection_and_closes_its_descriptor() {
    if integration_tests::skip_on_epoll("direct descriptors are io_uring's") {
        return;
    }
    on_runtime(LIMIT, || async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = runtime::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let mut total = 0;
            loop {
                let (res, buf) = s.read(Vec::with_capacity(4096)).await;
                let n = res.unwrap();
                if n == 0 {
                    return total;
                }
                total += n;
                let (res, _) = s.write_all(buf).await;
                res.unwrap();
            }
        });
        let c = TcpStream::connect(addr).await.unwrap();
        let server_addr = c.peer_addr().unwrap();
        let port = c.local_addr().unwrap().port();
        assert_eq!(connected_fds_on_port(port), 1);
        let d = c.into_direct().unwrap();
        assert_eq!(d.peer_addr().unwrap(), server_addr);
        // The ordinary descriptor is closed once the ring got to it.
        for _ in 0..200 {
            if connected_fds_on_port(port) == 0 {
                break;
            }
            runtime::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(connected_fds_on_port(port), 0);
        let mut sent = 0;
        for i in 0..100u64 {
            let msg = payload(i, 1 + (i as usize * 97) % 2000);
            sent += msg.len();
            let (res, msg) = d.write_all(msg).await;
            res.unwrap();
            let (res, got) = d.read_exact(Vec::with_capacity(msg.len())).await;
            res.unwrap();
            assert_eq!(got, msg);
        }
        d.shutdown(Shutdown::Write).unwrap();
        assert_eq!(server.await.unwrap(), sent);
    });
}

/// Runs `fut` until it is pending once (so its SQE is submitted), then
/// returns it, pinned, without dropping it.
fn poll_once<F: Future>(fut: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    fut.poll(&mut cx)
}

#[test]
fn slots_come_back_when_streams_and_unclaimed_accepts_go() {
    if integration_tests::skip_on_epoll("direct descriptors are io_uring's") {
        return;
    }
    with_deadline(LIMIT, || {
        // Three slots: two for accepts, one for `register`.
        let rt = Runtime::builder().direct_descriptors(3).build().unwrap();
        rt.block_on(async {
            assert_eq!(runtime::op::direct_table().unwrap(), 3);
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let mut clients = Vec::new();
            // Fill the table.
            let mut held = Vec::new();
            for _ in 0..2 {
                clients.push(TcpStream::connect(addr).await.unwrap());
                held.push(listener.accept_direct().await.unwrap().0);
            }
            assert!(held.iter().all(|s| s.is_direct()));
            assert_eq!(runtime::metrics().direct_descriptors, 2);
            // Full: the next accept falls back to an ordinary descriptor,
            // and the connection works.
            let c = TcpStream::connect(addr).await.unwrap();
            let (plain, _) = listener.accept_direct().await.unwrap();
            assert!(!plain.is_direct());
            assert_eq!(plain.slot(), None);
            let (res, _) = c.write_all(b"plain".to_vec()).await;
            res.unwrap();
            let (res, buf) = plain.read(Vec::with_capacity(8)).await;
            res.unwrap();
            assert_eq!(buf, b"plain");
            drop((c, plain));
            // Dropping a stream frees its slot.
            drop(held.pop());
            assert_eq!(runtime::metrics().direct_descriptors, 1);
            clients.push(TcpStream::connect(addr).await.unwrap());
            let (again, _) = listener.accept_direct().await.unwrap();
            assert!(again.is_direct());
            held.push(again);
            drop(held);
            assert_eq!(runtime::metrics().direct_descriptors, 0);
            // An accept whose future is dropped after the kernel put a
            // connection into a slot: the runtime frees that slot. With
            // two slots, a leak would make the third round fail.
            for _ in 0..6 {
                {
                    let mut accept = pin!(listener.accept_direct());
                    assert!(poll_once(accept.as_mut()).is_pending());
                    clients.push(TcpStream::connect(addr).await.unwrap());
                    // Let the accept's CQE arrive without polling it.
                    for _ in 0..20 {
                        runtime::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
            // The same for connections queued in a multishot accept that is
            // dropped unread.
            for _ in 0..3 {
                let mut incoming = listener.incoming_direct();
                {
                    let mut next = pin!(incoming.next());
                    assert!(poll_once(next.as_mut()).is_pending());
                }
                clients.push(TcpStream::connect(addr).await.unwrap());
                clients.push(TcpStream::connect(addr).await.unwrap());
                for _ in 0..20 {
                    runtime::time::sleep(Duration::from_millis(1)).await;
                }
                drop(incoming);
            }
            for _ in 0..200 {
                if runtime::op::in_flight() == 0 {
                    break;
                }
                runtime::time::sleep(Duration::from_millis(5)).await;
            }
            // Both slots are free again.
            let c1 = TcpStream::connect(addr).await.unwrap();
            let c2 = TcpStream::connect(addr).await.unwrap();
            let mut incoming = listener.incoming_direct();
            let mut got = Vec::new();
            // Connections queued by the rounds above are accepted too;
            // keep two at a time.
            for _ in 0..2 {
                got.push(incoming.next().await.unwrap().unwrap());
            }
            assert!(got.iter().all(|s| s.is_direct()));
            drop((c1, c2, clients));
        });
    });
}

#[test]
fn a_direct_stream_used_on_another_runtime_fails_with_ebadf() {
    if integration_tests::skip_on_epoll("direct descriptors are io_uring's") {
        return;
    }
    with_deadline(LIMIT, || {
        let rt1 = Runtime::new().unwrap();
        let rt2 = Runtime::new().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let listener1 = listener.try_clone().unwrap();
        let (a, mut a_peer) = rt1.block_on(async {
            let l = TcpListener::from_std(listener1);
            let peer = std::net::TcpStream::connect(addr).unwrap();
            (l.accept_direct().await.unwrap().0, peer)
        });
        rt2.block_on(async {
            let l = TcpListener::from_std(listener);
            let mut b_peer = std::net::TcpStream::connect(addr).unwrap();
            let (b, _) = l.accept_direct().await.unwrap();
            // Both runtimes start their tables at slot 0.
            assert_eq!(a.slot(), b.slot());
            b_peer.write_all(b"for b").unwrap();
            // `a` belongs to rt1: on rt2 it must not read b's bytes.
            let (res, buf) = a.read(Vec::with_capacity(16)).await;
            assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::EBADF));
            assert!(buf.is_empty());
            let (res, _) = a.write(b"not for b_peer".to_vec()).await;
            assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::EBADF));
            // Nor shut down b's connection (the same slot number here).
            let err = a.shutdown(Shutdown::Both).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EBADF));
            let (res, buf) = b.read(Vec::with_capacity(16)).await;
            res.unwrap();
            assert_eq!(buf, b"for b");
            drop(b);
            // The slot's close goes out with the runtime's next turn.
            runtime::time::sleep(Duration::from_millis(1)).await;
            b_peer
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut one = [0u8; 1];
            assert_eq!(
                b_peer.read(&mut one).unwrap(),
                0,
                "b_peer got nothing but EOF"
            );
        });
        // Back on its own runtime, `a` works.
        rt1.block_on(async {
            a_peer.write_all(b"for a").unwrap();
            let (res, buf) = a.read(Vec::with_capacity(16)).await;
            res.unwrap();
            assert_eq!(buf, b"for a");
        });
        // Dropped after its runtime: nothing to do, no panic.
        drop(rt1);
        drop(a);
    });
}

#[test]
fn multishot_receive_on_a_direct_stream() {
    if integration_tests::skip_on_epoll("direct descriptors are io_uring's") {
        return;
    }
    on_runtime(LIMIT, || async {
        let ring = BufRing::builder()
            .entries(16)
            .buf_size(512)
            .build()
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let msg = payload(3, 50_000);
        let m = msg.clone();
        let client = runtime::spawn(async move {
            let c = TcpStream::connect(addr).await.unwrap();
            let (res, _) = c.write_all(m).await;
            res.unwrap();
        });
        let (conn, _) = listener.accept_direct().await.unwrap();
        let mut rx = conn.recv_multishot(&ring);
        let mut got = Vec::new();
        while let Some(chunk) = rx.next().await {
            got.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(got, msg);
        client.await.unwrap();
    });
}

#[test]
fn table_size_settings_are_checked() {
    if integration_tests::skip_on_epoll("direct descriptors are io_uring's") {
        return;
    }
    let err = Runtime::builder()
        .direct_descriptors(0)
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    let err = Runtime::builder()
        .direct_descriptors((1 << 20) + 1)
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    // A table larger than RLIMIT_NOFILE: the kernel refuses, and the error
    // says which limit (the soft limit here is below 2^20 unless raised).
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) }, 0);
    if rl.rlim_cur >= 1 << 20 {
        eprintln!(
            "RLIMIT_NOFILE soft limit is {}: skipping the over-limit check",
            rl.rlim_cur
        );
        return;
    }
    let rt = Runtime::builder()
        .direct_descriptors(1 << 20)
        .build()
        .unwrap();
    let err = rt.block_on(async { runtime::op::direct_table().unwrap_err() });
    assert!(err.to_string().contains("RLIMIT_NOFILE"), "{err}");
}

#[test]
fn registered_files_read_write_sync_and_keep_their_descriptor() {
    if integration_tests::skip_on_epoll("direct descriptors are io_uring's") {
        return;
    }
    on_runtime(LIMIT, || async {
        let dir = std::env::temp_dir().join(format!("direct-file-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("data");
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .open(&path)
            .await
            .unwrap();
        assert!(!file.is_registered());
        let file = file.register().unwrap();
        assert!(file.is_registered());
        // Registering again changes nothing.
        let file = file.register().unwrap();
        assert!(file.is_registered());
        let data = payload(11, 300_000);
        let (res, data) = file.write_all_at(data, 4096).await;
        res.unwrap();
        file.sync_all().await.unwrap();
        let (res, got) = file
            .read_exact_at(Vec::with_capacity(data.len()), 4096)
            .await;
        res.unwrap();
        assert_eq!(got, data);
        let (res, bufs) = file
            .readv_at(vec![Vec::with_capacity(100), Vec::with_capacity(50)], 4096)
            .await;
        assert_eq!(res.unwrap(), 150);
        assert_eq!(bufs.concat(), data[..150]);
        // The descriptor still works for what needs one.
        assert_eq!(
            file.metadata().await.unwrap().len(),
            4096 + data.len() as u64
        );
        use std::os::fd::AsRawFd;
        assert!(file.as_raw_fd() >= 0);
        // Reads name the slot, not the number: point the number at
        // /dev/null, and reads still see the file's bytes.
        let null = std::fs::File::open("/dev/null").unwrap();
        // SAFETY: dup2 onto a descriptor this file owns; it is closed (as
        // /dev/null) when the file goes.
        assert!(unsafe { libc::dup2(null.as_raw_fd(), file.as_raw_fd()) } >= 0);
        let (res, got) = file.read_at(Vec::with_capacity(64), 4096).await;
        assert_eq!(res.unwrap(), 64);
        assert_eq!(got, data[..64]);
        drop(file);
        assert_eq!(std::fs::read(&path).unwrap()[4096..], data[..]);
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

#[test]
fn registered_streams_work_everywhere_and_free_their_slot() {
    if integration_tests::skip_on_epoll("direct descriptors are io_uring's") {
        return;
    }
    with_deadline(LIMIT, || {
        // One slot, which is `register`'s (none for accepts).
        let rt1 = Runtime::builder().direct_descriptors(1).build().unwrap();
        let rt2 = Runtime::new().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (mut peer, a) = rt1.block_on(async {
            let a = TcpStream::connect(addr).await.unwrap();
            let (peer, _) = listener.accept().unwrap();
            let a = a.register().unwrap();
            assert!(a.is_registered());
            // Socket options still work: it keeps its descriptor.
            a.set_nodelay(true).unwrap();
            assert!(a.nodelay().unwrap());
            // The table has one slot, and it is taken.
            let b = TcpStream::connect(addr).await.unwrap();
            let err = b.register().unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::ENFILE), "{err}");
            assert_eq!(runtime::metrics().direct_descriptors, 1);
            (peer, a)
        });
        // On another runtime the stream uses its descriptor: still correct.
        rt2.block_on(async {
            peer.write_all(b"on rt2").unwrap();
            let (res, buf) = a.read(Vec::with_capacity(16)).await;
            res.unwrap();
            assert_eq!(buf, b"on rt2");
        });
        rt1.block_on(async {
            let (res, _) = a.write_all(b"from rt1".to_vec()).await;
            res.unwrap();
            let mut got = [0u8; 8];
            peer.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"from rt1");
            // Dropping it frees the slot: another stream can take it.
            drop(a);
            let c = TcpStream::connect(addr).await.unwrap();
            let c = c.register().unwrap();
            assert!(c.is_registered());
        });
    });
}

#[test]
fn without_direct_descriptors_accepts_fall_back_to_ordinary_descriptors() {
    with_deadline(LIMIT, || {
        let rt = Runtime::builder()
            .mask_features(|f| f.direct_descriptors = false)
            .build()
            .unwrap();
        rt.block_on(async {
            assert!(!runtime::features().direct_descriptors);
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let client = runtime::spawn(async move {
                let c = TcpStream::connect(addr).await.unwrap();
                check_echo(&c, 9, 50).await;
                let c2 = TcpStream::connect(addr).await.unwrap();
                check_echo(&c2, 10, 50).await;
            });
            let (a, peer) = listener.accept_direct().await.unwrap();
            assert!(!a.is_direct());
            assert_eq!(a.peer_addr().unwrap(), peer);
            let a = runtime::spawn(echo(a));
            let mut incoming = listener.incoming_direct();
            let b = incoming.next().await.unwrap().unwrap();
            assert!(!b.is_direct());
            let b = runtime::spawn(echo(b));
            client.await.unwrap();
            assert!(a.await.unwrap().unwrap() > 0);
            assert!(b.await.unwrap().unwrap() > 0);
            assert_eq!(runtime::metrics().direct_descriptors, 0);
        });
    });
}

#[test]
fn direct_streams_take_fixed_buffers_zero_copy_and_send_queues() {
    if integration_tests::skip_on_epoll("direct descriptors are io_uring's") {
        return;
    }
    on_runtime(LIMIT, || async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let data = payload(21, 200_000);
        let expected = [data.clone(), data.clone(), b"fixed".to_vec(), data.clone()].concat();
        let reader = runtime::spawn(async move {
            let c = TcpStream::connect(addr).await.unwrap();
            let mut got = Vec::new();
            loop {
                let (res, buf) = c.read(Vec::with_capacity(65536)).await;
                if res.unwrap() == 0 {
                    return got;
                }
                got.extend_from_slice(&buf);
            }
        });
        let (conn, _) = listener.accept_direct().await.unwrap();
        assert!(conn.is_direct());
        // Zero-copy send.
        let (res, _) = conn.write_all_zc(data.clone()).await;
        res.unwrap();
        // A send queue: the same bytes in 1 KiB pieces, one flush.
        let mut queue = conn.send_queue(256).unwrap();
        for piece in data.chunks(1024) {
            queue.push(piece.to_vec()).unwrap();
        }
        assert_eq!(queue.flush().await.unwrap(), data.len());
        drop(queue);
        // A registered buffer, written with WRITE_FIXED.
        let pool = runtime::fixed::FixedBufPool::new(1, 4096).unwrap();
        let mut buf = pool.try_get().unwrap();
        buf.extend_from_slice(b"fixed");
        let (res, buf) = conn.write_fixed(buf).await;
        assert_eq!(res.unwrap(), 5);
        drop(buf);
        // Zero copy from a registered buffer, in pieces.
        for piece in data.chunks(4096) {
            let mut buf = pool.get().await;
            buf.extend_from_slice(piece);
            let mut off = 0;
            while off < piece.len() {
                let (res, b) = conn.send_zc_fixed(buf.slice(off..)).await;
                off += res.unwrap();
                buf = b.into_inner();
            }
        }
        conn.shutdown(Shutdown::Write).unwrap();
        assert_eq!(reader.await.unwrap(), expected);
    });
}

#[test]
fn into_direct_works_on_a_shared_registered_stream() {
    if integration_tests::skip_on_epoll("direct descriptors are io_uring's") {
        return;
    }
    on_runtime(LIMIT, || async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let c = TcpStream::connect(addr).await.unwrap();
        let (s, _) = listener.accept().await.unwrap();
        let c = c.register().unwrap();
        // A clone of the handle lives in the send queue.
        let mut queue = c.send_queue(4).unwrap();
        let held = runtime::metrics().direct_descriptors;
        let d = c.into_direct().unwrap();
        assert!(d.is_direct());
        queue.push(b"queued ".to_vec()).unwrap();
        queue.flush().await.unwrap();
        drop(queue);
        let (res, _) = d.write_all(b"direct".to_vec()).await;
        res.unwrap();
        d.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        loop {
            let (res, buf) = s.read(Vec::with_capacity(64)).await;
            if res.unwrap() == 0 {
                break;
            }
            got.extend_from_slice(&buf);
        }
        assert_eq!(got, b"queued direct");
        // The registered handle's slot went with the queue; the direct one
        // holds one.
        assert_eq!(runtime::metrics().direct_descriptors, held);
        drop(d);
        assert_eq!(runtime::metrics().direct_descriptors, held - 1);
    });
}
