//! A read into a buffer with no room (`Vec::new()`, a full `Vec`, an empty
//! `Box<[u8]>`, an empty registered buffer) returns `Ok(0)` at once, without
//! submitting anything, on every kind of stream and file (`API.md`, "Buffers
//! and files a user already has"), as std's `read` does; the data waiting
//! on the stream stays there for the next read. Datagram sockets keep
//! std's behaviour instead: a receive with no room takes (and discards) the
//! next datagram.
//!
//! "At once" is checked by polling the read's future exactly once: an
//! operation that went to the kernel cannot be ready on its first poll (its
//! SQE is submitted on the runtime's next tick), so the check needs no
//! timing. Every test runs under `on_runtime`, so a hang fails.

use std::future::Future;
use std::io::{self, Write as _};
use std::net::UdpSocket as StdUdpSocket;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use fs::File;
use integration_tests::on_runtime;
use net::{DirectStream, TcpListener, TcpStream, UdpSocket, UnixStream};
use runtime::buf::IoBuf;
use runtime::fixed::FixedBufPool;
use runtime::io::OwnedRead;
use runtime::op::in_flight;
use runtime::time::timeout;

/// The limit of every test (a healthy run takes milliseconds).
const LIMIT: Duration = Duration::from_secs(60);

/// Polls `fut` once and returns its output; panics if it is not ready,
/// which for a read means it went to the kernel.
fn at_once<F: Future>(what: &str, fut: F) -> F::Output {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => {
            panic!("{what}: a read with no room was submitted instead of Ok(0) at once")
        }
    }
}

/// A `Vec` with no spare capacity and some bytes in it.
fn full_vec() -> Vec<u8> {
    let mut v = Vec::with_capacity(4);
    v.extend_from_slice(b"full");
    v.shrink_to_fit();
    assert_eq!(v.len(), v.capacity());
    v
}

/// An empty boxed slice.
fn empty_box() -> Box<[u8]> {
    Vec::new().into_boxed_slice()
}

/// Every no-room read on one stream type (`$reader`), then the data `$writer`
/// sends is all there for a read with room.
macro_rules! no_room_reads {
    ($reader:expr, $writer:expr, $pool:expr) => {{
        let r = $reader;
        let w = $writer;
        let before = in_flight();

        let (res, buf) = at_once("read(Vec::new())", r.read(Vec::new()));
        assert_eq!(res.unwrap(), 0);
        assert_eq!((buf.len(), buf.capacity()), (0, 0));

        let (res, buf) = at_once("read(full Vec)", r.read(full_vec()));
        assert_eq!(res.unwrap(), 0);
        assert_eq!(&buf[..], b"full", "a read with no room changed the buffer");

        let (res, buf) = at_once("read(empty Box)", r.read(empty_box()));
        assert_eq!(res.unwrap(), 0);
        assert!(buf.is_empty());

        let (res, _) = at_once(
            "read_timeout(Vec::new())",
            r.read_timeout(Vec::new(), Duration::from_secs(30)),
        );
        assert_eq!(res.unwrap(), 0);

        let (res, buf) = at_once("read_exact(Vec::new())", r.read_exact(Vec::new()));
        res.unwrap();
        assert!(buf.is_empty());
        let (res, buf) = at_once("read_exact(full Vec)", r.read_exact(full_vec()));
        res.unwrap();
        assert_eq!(&buf[..], b"full");

        let (res, bufs) = at_once(
            "readv(no room in any)",
            r.readv(vec![Vec::new(), full_vec(), Vec::new()]),
        );
        assert_eq!(res.unwrap(), 0);
        assert_eq!(bufs.len(), 3);
        assert_eq!(&bufs[1][..], b"full");
        let (res, bufs) = at_once("readv(no buffers)", r.readv(Vec::<Vec<u8>>::new()));
        assert_eq!(res.unwrap(), 0);
        assert!(bufs.is_empty());

        let pool: &FixedBufPool = $pool;
        let fixed = pool.get().await;
        let (res, fixed) = at_once("read_fixed(empty slice)", r.read_fixed(fixed.slice(0..0)));
        assert_eq!(res.unwrap(), 0);
        let mut fixed = fixed.into_inner();
        let cap = fixed.capacity();
        fixed.extend_from_slice(&vec![7u8; cap]);
        let (res, fixed) = at_once("read_fixed(full)", r.read_fixed(fixed));
        assert_eq!(res.unwrap(), 0);
        assert_eq!(fixed.len(), cap);
        drop(fixed);

        // Through the stream trait too.
        let (res, _) = at_once(
            "OwnedRead::read(Vec::new())",
            OwnedRead::read(&r, Vec::new()),
        );
        assert_eq!(res.unwrap(), 0);

        assert_eq!(
            in_flight(),
            before,
            "a read with no room left an op in flight"
        );

        // The bytes sent meanwhile were not eaten by any of those reads.
        let (res, _) = w.write_all(b"still here".to_vec()).await;
        res.unwrap();
        let (res, buf) = r.read_exact(Vec::with_capacity(10)).await;
        res.unwrap();
        assert_eq!(&buf[..], b"still here");
    }};
}

#[test]
fn tcp_reads_with_no_room_return_at_once() {
    on_runtime(LIMIT, || async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let pool = FixedBufPool::new(1, 4096).unwrap();
        no_room_reads!(server, client, &pool);
    });
}

#[test]
fn unix_reads_with_no_room_return_at_once() {
    on_runtime(LIMIT, || async {
        let (a, b) = UnixStream::pair().unwrap();
        let pool = FixedBufPool::new(1, 4096).unwrap();
        no_room_reads!(a, b, &pool);
    });
}

#[test]
fn direct_stream_reads_with_no_room_return_at_once() {
    on_runtime(LIMIT, || async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _): (DirectStream, _) = listener.accept_direct().await.unwrap();
        let pool = FixedBufPool::new(1, 4096).unwrap();
        no_room_reads!(server, client, &pool);
    });
}

/// The symptom that was reported: a read with no room waited for data and
/// then returned `Ok(0)`, which looks like end of stream while the data
/// stayed unread. Now it returns before any data comes (the peer sends only
/// after it returned), and a read with room then gets the data.
#[test]
fn a_read_with_no_room_does_not_wait_for_data() {
    on_runtime(LIMIT, || async {
        let (a, b) = UnixStream::pair().unwrap();
        let (res, _) = timeout(Duration::from_secs(5), a.read(Vec::new()))
            .await
            .expect("a read with no room waited for data");
        assert_eq!(res.unwrap(), 0);
        let (res, _) = b.write_all(b"data".to_vec()).await;
        res.unwrap();
        let (res, buf) = a.read(Vec::with_capacity(8)).await;
        assert_eq!((res.unwrap(), &buf[..]), (4, &b"data"[..]));
    });
}

#[test]
fn file_reads_with_no_room_return_at_once() {
    on_runtime(LIMIT, || async {
        let path = std::env::temp_dir().join(format!("no-room-{}", std::process::id()));
        std::fs::File::create(&path)
            .unwrap()
            .write_all(b"file data")
            .unwrap();
        let file = File::open(&path).await.unwrap();
        let before = in_flight();

        let (res, buf) = at_once("read_at(Vec::new())", file.read_at(Vec::new(), 0));
        assert_eq!(res.unwrap(), 0);
        assert_eq!(buf.capacity(), 0);
        let (res, buf) = at_once("read_at(full Vec)", file.read_at(full_vec(), 0));
        assert_eq!(res.unwrap(), 0);
        assert_eq!(&buf[..], b"full");
        let (res, _) = at_once("read_at(empty Box)", file.read_at(empty_box(), 0));
        assert_eq!(res.unwrap(), 0);
        let (res, _) = at_once(
            "read_exact_at(Vec::new())",
            file.read_exact_at(Vec::new(), 3),
        );
        res.unwrap();
        let (res, buf) = at_once("read_exact_at(full Vec)", file.read_exact_at(full_vec(), 3));
        res.unwrap();
        assert_eq!(&buf[..], b"full");
        let (res, _) = at_once(
            "readv_at(no room)",
            file.readv_at(vec![Vec::new(), full_vec()], 0),
        );
        assert_eq!(res.unwrap(), 0);
        let pool = FixedBufPool::new(1, 4096).unwrap();
        let fixed = pool.get().await;
        let (res, _) = at_once(
            "read_fixed_at(empty slice)",
            file.read_fixed_at(fixed.slice(0..0), 0),
        );
        assert_eq!(res.unwrap(), 0);
        let (res, _) = at_once(
            "OwnedRead::read(Vec::new())",
            OwnedRead::read(&file, Vec::new()),
        );
        assert_eq!(res.unwrap(), 0);
        let (res, _) = at_once(
            "OwnedRead::readv(no room)",
            OwnedRead::readv(&file, vec![Vec::<u8>::new()]),
        );
        assert_eq!(res.unwrap(), 0);
        assert_eq!(
            in_flight(),
            before,
            "a read with no room left an op in flight"
        );

        // The file position did not move: a read with room starts at 0.
        let (res, buf) = OwnedRead::read(&file, Vec::with_capacity(9)).await;
        assert_eq!(res.unwrap(), 9);
        assert_eq!(&buf[..], b"file data");
        // A bad offset is still reported before the room is looked at.
        let (res, _) = at_once("read_at(bad offset)", file.read_at(Vec::new(), u64::MAX));
        assert_eq!(res.unwrap_err().kind(), io::ErrorKind::InvalidInput);
        file.close().await.unwrap();
        std::fs::remove_file(&path).unwrap();
    });
}

/// UDP keeps std's behaviour (documented on `net::UdpSocket`): a receive
/// with no room waits for a datagram, takes it and reports `0` (and the
/// sender); the next receive gets the next datagram. Checked against std's
/// `UdpSocket` doing the same.
#[test]
fn udp_receive_with_no_room_takes_one_datagram_as_std_does() {
    // What std does.
    let rx = StdUdpSocket::bind("127.0.0.1:0").unwrap();
    let tx = StdUdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tx.send_to(b"one", rx.local_addr().unwrap()).unwrap();
    tx.send_to(b"two", rx.local_addr().unwrap()).unwrap();
    let (n, from) = rx.recv_from(&mut []).unwrap();
    assert_eq!((n, from), (0, tx.local_addr().unwrap()));
    let mut buf = [0u8; 8];
    let n = rx.recv(&mut buf).unwrap();
    assert_eq!(
        &buf[..n],
        b"two",
        "std: the empty receive took one datagram"
    );

    // The same here.
    on_runtime(LIMIT, || async {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();

        // Nothing sent yet: the receive waits (it is submitted).
        let mut pending = pin!(rx.recv_from(Vec::new()));
        assert!(pending
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_pending());

        for msg in [&b"one"[..], b"two", b"three"] {
            let (res, _) = tx.send_to(msg.to_vec(), to).await;
            res.unwrap();
        }
        let (res, buf) = timeout(Duration::from_secs(10), pending)
            .await
            .expect("the empty receive never got a datagram");
        assert_eq!(res.unwrap(), (0, tx.local_addr().unwrap()));
        assert_eq!(buf.capacity(), 0);

        // `recv` on a connected socket: the same, with a full Vec.
        rx.connect(tx.local_addr().unwrap()).await.unwrap();
        let (res, buf) = timeout(Duration::from_secs(10), rx.recv(full_vec()))
            .await
            .expect("the full-buffer receive never got a datagram");
        assert_eq!(res.unwrap(), 0);
        assert_eq!(&buf[..], b"full");

        let (res, buf) = rx.recv(Vec::with_capacity(8)).await;
        assert_eq!(res.unwrap(), 5);
        assert_eq!(&buf[..], b"three", "each empty receive took one datagram");
    });
}
