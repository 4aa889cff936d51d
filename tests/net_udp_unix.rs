//! Integration tests of `net`'s UDP and Unix domain types (`UdpSocket`,
//! `UnixListener`, `UnixStream`, `UnixIncoming`) on loopback and in a
//! temporary directory: datagram round trips with their source addresses,
//! connected sockets, truncation, Unix echo, `pair()`, multishot accept,
//! vectored I/O, and the error paths (`AddrInUse`, `NotFound`,
//! `ConnectionRefused`, a send without a destination).
//!
//! Every test runs under `with_deadline`, so a hang is a failure; no
//! verdict depends on timing.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use integration_tests::on_runtime;
use net::{UdpSocket, UnixListener, UnixStream};

/// The limit of every test: generous, a healthy run takes well under it.
const LIMIT: Duration = Duration::from_secs(60);

/// `len` deterministic bytes that differ with `seed`.
fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A socket path in the temporary directory, unique in this run, removed
/// (if it exists) when created and when dropped.
struct SockPath(PathBuf);

impl SockPath {
    fn new(name: &str) -> SockPath {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("net-{}-{name}-{n}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        SockPath(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for SockPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

// ---------------------------------------------------------------------------
// UDP
// ---------------------------------------------------------------------------

/// Two UDP sockets on loopback.
fn udp_pair() -> (UdpSocket, SocketAddr, UdpSocket, SocketAddr) {
    let a = UdpSocket::bind("127.0.0.1:0").expect("bind a");
    let b = UdpSocket::bind("127.0.0.1:0").expect("bind b");
    let (aa, ba) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    assert_ne!(aa, ba);
    (a, aa, b, ba)
}

/// 100 datagram round trips with `send_to`/`recv_from` (sizes 1 byte to
/// 8 KiB, distinct contents): each arrives whole with the sender's address
/// as its source, and the reply, sent to that address, comes back whole.
/// A receive into a vector appends after what it already holds.
#[test]
fn udp_send_to_recv_from_100_round_trips() {
    on_runtime(LIMIT, || async {
        let (a, a_addr, b, b_addr) = udp_pair();
        for i in 0..100u64 {
            let len = 1 + (i as usize * 83) % 8192;
            let data = payload(i, len);
            let (res, _) = a.send_to(data.clone(), b_addr).await;
            assert_eq!(res.expect("send_to"), len);
            let (res, got) = b.recv_from(Vec::with_capacity(9000)).await;
            let (n, from) = res.expect("recv_from");
            assert_eq!(n, len, "datagram {i}");
            assert_eq!(from, a_addr, "source of datagram {i}");
            assert!(got == data, "contents of datagram {i}");

            let reply = payload(1000 + i, len / 2 + 1);
            let (res, _) = b.send_to(reply.clone(), from).await;
            assert_eq!(res.expect("reply send_to"), reply.len());
            let mut buf = Vec::with_capacity(3 + 9000);
            buf.extend_from_slice(b"pre");
            let (res, got) = a.recv_from(buf).await;
            let (n, from) = res.expect("reply recv_from");
            assert_eq!(from, b_addr);
            assert_eq!(n, reply.len());
            assert_eq!(&got[..3], b"pre", "the receive appends");
            assert!(got[3..] == reply[..], "contents of reply {i}");
        }
    });
}

/// Many datagrams in flight at once: a task posts receives while another
/// sends 200 numbered datagrams in bursts of 10, each burst acknowledged;
/// every number arrives exactly once, intact.
#[test]
fn udp_concurrent_sender_and_receiver() {
    on_runtime(LIMIT, || async {
        let (a, a_addr, b, b_addr) = udp_pair();
        let receiver = runtime::spawn(async move {
            let mut seen = vec![0u32; 200];
            for k in 0..200 {
                let (res, got) = b.recv_from(Vec::with_capacity(64)).await;
                let (n, from) = res.expect("recv_from");
                assert_eq!(from, a_addr);
                assert_eq!(n, 36);
                let id = u32::from_le_bytes(got[..4].try_into().unwrap()) as usize;
                assert_eq!(got[4..], payload(id as u64, 32)[..]);
                seen[id] += 1;
                if k % 10 == 9 {
                    let (res, _) = b.send_to(&b"ack"[..], a_addr).await;
                    res.expect("ack");
                }
            }
            seen
        });
        for burst in 0..20u32 {
            for k in 0..10u32 {
                let id = burst * 10 + k;
                let mut d = id.to_le_bytes().to_vec();
                d.extend_from_slice(&payload(id as u64, 32));
                let (res, _) = a.send_to(d, b_addr).await;
                assert_eq!(res.expect("send_to"), 36);
            }
            let (res, ack) = a.recv_from(Vec::with_capacity(8)).await;
            assert_eq!(res.expect("ack").1, b_addr);
            assert_eq!(ack, b"ack");
        }
        let seen = receiver.await.expect("receiver task");
        assert!(seen.iter().all(|&n| n == 1), "{seen:?}");
    });
}

/// `connect` sets the default peer: `send`/`recv` work between two
/// connected sockets, `peer_addr` reports it, and a connected socket does
/// not receive datagrams from a third socket. `send` on an unconnected
/// socket and `peer_addr` of one are errors.
#[test]
fn udp_connect_send_recv() {
    on_runtime(LIMIT, || async {
        let (a, a_addr, b, b_addr) = udp_pair();
        let err = a.peer_addr().expect_err("peer_addr before connect");
        assert_eq!(err.kind(), io::ErrorKind::NotConnected, "{err}");
        let (res, _) = a.send(&b"nowhere"[..]).await;
        let err = res.expect_err("send without a peer");
        assert_eq!(err.raw_os_error(), Some(libc::EDESTADDRREQ), "{err}");

        a.connect(b_addr).await.expect("connect a");
        b.connect(a_addr).await.expect("connect b");
        assert_eq!(a.peer_addr().unwrap(), b_addr);
        assert_eq!(b.peer_addr().unwrap(), a_addr);

        // A third socket's datagram is filtered out by the kernel.
        let c = UdpSocket::bind("127.0.0.1:0").expect("bind c");
        let (res, _) = c.send_to(&b"intruder"[..], a_addr).await;
        res.expect("send_to from c");
        let (res, _) = b.send(&b"hello a"[..]).await;
        assert_eq!(res.expect("send"), 7);
        let (res, got) = a.recv(Vec::with_capacity(64)).await;
        assert_eq!(res.expect("recv"), 7);
        assert_eq!(got, b"hello a");
        let (res, _) = a.send(&b"hello b"[..]).await;
        assert_eq!(res.expect("send"), 7);
        let (res, got) = b.recv(Vec::with_capacity(64)).await;
        assert_eq!(res.expect("recv"), 7);
        assert_eq!(got, b"hello b");

        // Connecting through a name (resolved on the blocking pool).
        let d = UdpSocket::bind("127.0.0.1:0").expect("bind d");
        d.connect(format!("localhost:{}", b_addr.port()))
            .await
            .expect("connect by name");
        assert_eq!(d.peer_addr().unwrap(), b_addr);
        let _ = format!("{a:?} {d:?}");
    });
}

/// A datagram larger than the buffer is truncated to the buffer's size (a
/// vector's spare capacity, a box's length) and the rest of it is
/// discarded: the next receive gets the next datagram.
#[test]
fn udp_recv_into_too_small_buffer_truncates() {
    on_runtime(LIMIT, || async {
        let (a, a_addr, b, b_addr) = udp_pair();
        let big = payload(7, 100);
        let (res, _) = a.send_to(big.clone(), b_addr).await;
        assert_eq!(res.expect("send_to"), 100);
        let (res, _) = a.send_to(&b"second"[..], b_addr).await;
        res.expect("send_to");
        let (res, _) = a.send_to(big.clone(), b_addr).await;
        res.expect("send_to");

        let (res, got) = b.recv_from(Vec::with_capacity(10)).await;
        let (n, from) = res.expect("recv_from");
        assert_eq!(from, a_addr);
        assert_eq!(n, 10, "truncated to the buffer");
        assert_eq!(got, big[..10]);
        let (res, got) = b.recv_from(Vec::with_capacity(64)).await;
        assert_eq!(res.expect("recv_from").0, 6);
        assert_eq!(got, b"second", "the rest of the big datagram was discarded");
        let boxed: Box<[u8]> = vec![0u8; 16].into();
        let (res, got) = b.recv_from(boxed).await;
        assert_eq!(res.expect("recv_from").0, 16);
        assert_eq!(&got[..], &big[..16]);
    });
}

/// Binding a UDP address that is taken is `AddrInUse`.
#[test]
fn udp_bind_address_in_use() {
    on_runtime(LIMIT, || async {
        let a = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let err = UdpSocket::bind(a.local_addr().unwrap()).expect_err("second bind");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    });
}

// ---------------------------------------------------------------------------
// Unix
// ---------------------------------------------------------------------------

/// Echoes everything until EOF.
async fn unix_echo(stream: UnixStream) -> io::Result<usize> {
    let mut buf = Vec::with_capacity(8192);
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

/// Bind, accept and connect on a path: the addresses name the path on the
/// listener's side and are unnamed on the client's; 20 clients' payloads
/// (up to 200 KiB) are echoed byte for byte.
#[test]
fn unix_bind_accept_connect_echo() {
    on_runtime(LIMIT, || async {
        let path = SockPath::new("echo");
        let listener = UnixListener::bind(path.path()).expect("bind");
        assert_eq!(
            listener.local_addr().unwrap().as_pathname(),
            Some(path.path())
        );
        let server = runtime::spawn(async move {
            let mut handlers = Vec::new();
            for _ in 0..20 {
                let (stream, addr) = listener.accept().await.expect("accept");
                assert!(addr.is_unnamed(), "client address: {addr:?}");
                handlers.push(runtime::spawn(unix_echo(stream)));
            }
            let mut total = 0;
            for h in handlers {
                total += h.await.expect("handler").expect("echo");
            }
            total
        });
        let mut clients = Vec::new();
        let mut sent = 0;
        for i in 0..20u64 {
            let len = 1 + (i as usize * 10_007) % (200 * 1024);
            sent += len;
            let p = path.path().to_path_buf();
            clients.push(runtime::spawn(async move {
                let s = std::rc::Rc::new(UnixStream::connect(&p).await.expect("connect"));
                assert_eq!(s.peer_addr().unwrap().as_pathname(), Some(p.as_path()));
                assert!(s.local_addr().unwrap().is_unnamed());
                let data = payload(i, len);
                let writer = {
                    let s = s.clone();
                    let data = data.clone();
                    runtime::spawn(async move {
                        let (res, _) = s.write_all(data).await;
                        res.expect("write_all");
                        s.shutdown(Shutdown::Write).expect("shutdown");
                    })
                };
                let mut got = Vec::with_capacity(len + 1);
                loop {
                    if got.len() == got.capacity() {
                        got.reserve(4096);
                    }
                    let (res, b) = s.read(got).await;
                    got = b;
                    if res.expect("read") == 0 {
                        break;
                    }
                }
                writer.await.expect("writer");
                assert!(
                    got == data,
                    "echo of client {i}: {} of {len} bytes",
                    got.len()
                );
            }));
        }
        for c in clients {
            c.await.expect("client");
        }
        assert_eq!(server.await.expect("server"), sent);
    });
}

/// `pair()` gives two connected streams: bytes flow both ways, `Debug`
/// does not panic, and dropping one end gives the other EOF.
#[test]
fn unix_pair_round_trip() {
    on_runtime(LIMIT, || async {
        let (a, b) = UnixStream::pair().expect("pair");
        let (res, _) = a.write_all(&b"from a"[..]).await;
        res.expect("write a");
        let (res, got) = b.read_exact(Vec::with_capacity(6)).await;
        res.expect("read b");
        assert_eq!(got, b"from a");
        let (res, _) = b.send(&b"from b"[..]).await;
        assert_eq!(res.expect("send b"), 6);
        let (res, got) = a.read_exact(Vec::with_capacity(6)).await;
        res.expect("read a");
        assert_eq!(got, b"from b");
        assert!(!format!("{a:?}").is_empty());
        assert!(a.local_addr().unwrap().is_unnamed());
        drop(b);
        let (res, _) = a.read(Vec::with_capacity(8)).await;
        assert_eq!(res.expect("read at EOF"), 0);
        let (res, _) = a.write(&b"x"[..]).await;
        assert_eq!(
            res.expect_err("write to a closed pair").kind(),
            io::ErrorKind::BrokenPipe
        );
    });
}

/// `incoming()` on a Unix listener accepts 50 connections, each identified
/// by the byte its client sends: every ID is seen exactly once, through the
/// inherent `next()` and the `futures_core::Stream` impl alike.
#[test]
fn unix_incoming_accepts_50_connections() {
    const CONNS: usize = 50;
    on_runtime(LIMIT, || async {
        let path = SockPath::new("incoming");
        let listener = UnixListener::bind(path.path()).expect("bind");
        let server = runtime::spawn(async move {
            let mut incoming = listener.incoming();
            let _ = format!("{incoming:?}");
            let mut seen = vec![0usize; CONNS];
            for i in 0..CONNS {
                let next = if i % 2 == 0 {
                    incoming.next().await
                } else {
                    std::future::poll_fn(|cx| {
                        futures_core::Stream::poll_next(Pin::new(&mut incoming), cx)
                    })
                    .await
                };
                let s = next.expect("incoming never ends").expect("accept");
                let (res, id) = s.read_exact(Vec::with_capacity(1)).await;
                res.expect("read ID");
                seen[id[0] as usize] += 1;
                let (res, _) = s.write_all(&b"k"[..]).await;
                res.expect("ack");
            }
            seen
        });
        let clients: Vec<_> = (0..CONNS)
            .map(|id| {
                let p = path.path().to_path_buf();
                runtime::spawn(async move {
                    let s = UnixStream::connect(&p).await.expect("connect");
                    let (res, _) = s.write_all(vec![id as u8]).await;
                    res.expect("send ID");
                    let (res, ack) = s.read_exact(Vec::with_capacity(1)).await;
                    res.expect("ack");
                    assert_eq!(ack, b"k");
                })
            })
            .collect();
        for c in clients {
            c.await.expect("client");
        }
        let seen = server.await.expect("server");
        for (id, &n) in seen.iter().enumerate() {
            assert_eq!(n, 1, "ID {id} seen {n} times");
        }
    });
}

/// `writev` of 16 buffers and `readv` into 16 vectors of other sizes (some
/// with a prefix) on a Unix stream: the bytes arrive in order and each
/// vector's spare capacity is filled in turn.
#[test]
fn unix_readv_writev_16_buffers() {
    on_runtime(LIMIT, || async {
        let (a, b) = UnixStream::pair().expect("pair");
        let out: Vec<Vec<u8>> = (0..16)
            .map(|i| payload(300 + i as u64, 1 + i * 37 % 500))
            .collect();
        let expected = out.concat();
        let total = expected.len();
        let (res, out) = a.writev(out).await;
        assert_eq!(
            res.expect("writev"),
            total,
            "a small writev on a fresh pair is whole"
        );
        assert_eq!(out.len(), 16);

        let room: Vec<usize> = {
            let mut r: Vec<usize> = (0..16).map(|i| 1 + (i * 53) % 400).collect();
            let sum: usize = r.iter().sum();
            assert!(sum <= total);
            r[15] += total - sum;
            r
        };
        let mut ins: Vec<Vec<u8>> = Vec::new();
        let mut prefix_lens = Vec::new();
        for (i, &n) in room.iter().enumerate() {
            let prefix = if i % 4 == 1 {
                vec![b'#'; i]
            } else {
                Vec::new()
            };
            let mut v = Vec::with_capacity(prefix.len() + n);
            v.extend_from_slice(&prefix);
            prefix_lens.push(prefix.len());
            ins.push(v);
        }
        // A Unix stream delivers what one sendmsg queued in one go, but
        // loop anyway: a read may legally be short.
        let mut got_total = 0;
        while got_total < total {
            let (res, back) = b.readv(ins).await;
            ins = back;
            let n = res.expect("readv");
            assert!(n > 0, "EOF after {got_total} of {total}");
            got_total += n;
        }
        assert_eq!(got_total, total);
        let mut at = 0;
        for (i, v) in ins.iter().enumerate() {
            assert_eq!(v.len(), v.capacity(), "vector {i} filled");
            assert!(v[..prefix_lens[i]].iter().all(|&c| c == b'#'));
            let body = &v[prefix_lens[i]..];
            assert!(body == &expected[at..at + body.len()], "vector {i}");
            at += body.len();
        }
        assert_eq!(at, total);
    });
}

/// Binding a path that exists (a live listener's, or a plain file) is
/// `AddrInUse`; connecting to a missing path is `NotFound`; connecting to
/// a socket file nobody listens on any more is `ConnectionRefused`; a path
/// too long for a socket address is `InvalidInput`.
#[test]
fn unix_bind_in_use_and_connect_errors() {
    on_runtime(LIMIT, || async {
        let path = SockPath::new("inuse");
        let listener = UnixListener::bind(path.path()).expect("bind");
        let err = UnixListener::bind(path.path()).expect_err("bind over a listener");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        let _ = format!("{listener:?}");

        let file = SockPath::new("file");
        std::fs::write(file.path(), b"not a socket").expect("write file");
        let err = UnixListener::bind(file.path()).expect_err("bind over a file");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");

        let missing = SockPath::new("missing");
        let err = UnixStream::connect(missing.path())
            .await
            .expect_err("connect to a missing path");
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");

        // A path longer than a socket address holds is a bad argument.
        let long = std::env::temp_dir().join("x".repeat(200));
        let err = UnixListener::bind(&long).expect_err("bind to an overlong path");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        let err = UnixStream::connect(&long)
            .await
            .expect_err("connect to an overlong path");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");

        drop(listener);
        // The socket file outlives its listener; nobody accepts there. The
        // close is asynchronous: wait (bounded) for it to take effect.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let err = loop {
            match UnixStream::connect(path.path()).await {
                Ok(_) => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "connect succeeded long after the listener was dropped"
                    );
                    runtime::time::sleep(Duration::from_millis(1)).await;
                }
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    });
}

/// `UnixListener::from_std` and `UnixStream::from_std` take over std
/// sockets (switching them to blocking mode) and work.
#[test]
fn unix_from_std() {
    on_runtime(LIMIT, || async {
        let path = SockPath::new("fromstd");
        let std_listener = std::os::unix::net::UnixListener::bind(path.path()).expect("bind");
        std_listener.set_nonblocking(true).unwrap();
        let listener = UnixListener::from_std(std_listener);
        let std_stream = std::os::unix::net::UnixStream::connect(path.path()).expect("connect");
        let stream = UnixStream::from_std(std_stream);
        let (accepted, _) = listener.accept().await.expect("accept");
        let (res, _) = stream.write_all(&b"std"[..]).await;
        res.expect("write");
        let (res, got) = accepted.read_exact(Vec::with_capacity(3)).await;
        res.expect("read");
        assert_eq!(got, b"std");
    });
}

/// A connection whose client is already gone when it is accepted is still
/// accepted (with its address), and reads the client's last bytes, then
/// EOF; the listener goes on accepting.
#[test]
fn unix_accept_after_the_client_closed() {
    on_runtime(LIMIT, || async {
        let path = SockPath::new("gone");
        let listener = UnixListener::bind(path.path()).expect("bind");
        {
            let mut c = std::os::unix::net::UnixStream::connect(path.path()).expect("connect");
            std::io::Write::write_all(&mut c, b"bye").expect("write");
        }
        let (s, addr) = listener.accept().await.expect("accept a closed client");
        assert!(addr.is_unnamed());
        let (res, got) = s.read_exact(Vec::with_capacity(3)).await;
        res.expect("read");
        assert_eq!(got, b"bye");
        let (res, _) = s.read(Vec::with_capacity(8)).await;
        assert_eq!(res.expect("read at EOF"), 0);
        let c = UnixStream::connect(path.path()).await.expect("connect");
        let (s2, _) = listener.accept().await.expect("accept");
        let (res, _) = c.write_all(&b"hi"[..]).await;
        res.expect("write");
        let (res, got) = s2.read_exact(Vec::with_capacity(2)).await;
        res.expect("read");
        assert_eq!(got, b"hi");
    });
}
