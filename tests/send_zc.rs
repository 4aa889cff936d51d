//! Zero-copy sends (`send_zc`, `write_all_zc`, `IORING_OP_SEND_ZC`) on
//! TCP and Unix streams: the bytes arrive intact, the buffer comes back
//! intact after the notification, a dropped send leaks nothing (the
//! buffer stays with the runtime until the notification, the descriptor is
//! closed after it), a closed peer is an error (no `SIGPIPE`), and Unix
//! sockets (which refuse `SEND_ZC`) fall back to a plain send. The fallback
//! for kernels without the opcode is tested by net's unit tests
//! (`send_zc::tests`), which force that decision.
//!
//! The tests count the process's descriptors, so they run one at a time
//! (a static mutex).

use std::future::Future;
use std::rc::Rc;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use integration_tests::with_deadline;
use net::{TcpListener, TcpStream, UnixStream};
use runtime::buf::{IoBuf, Slice};
use runtime::io::OwnedRead;
use runtime::time::{sleep, timeout};
use runtime::BufResult;
use runtime::Runtime;

/// The limit of every test.
const LIMIT: Duration = Duration::from_secs(60);

/// Serializes the tests of this binary: they count descriptors.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs the future made by `make` on a fresh runtime, under the deadline,
/// alone in this binary.
fn run<M, F>(make: M) -> F::Output
where
    M: FnOnce() -> F + Send + 'static,
    F: Future,
    F::Output: Send + 'static,
{
    with_deadline(LIMIT, move || {
        let _alone = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
        let rt = Runtime::new().expect("cannot start the runtime");
        rt.block_on(make())
    })
}

/// A recognisable byte pattern (not periodic in 256 bytes).
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// The number of open descriptors of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    let (a, b) = futures_join(TcpStream::connect(addr), listener.accept()).await;
    (a.expect("connect"), b.expect("accept").0)
}

/// Both futures, concurrently (one as a task).
async fn futures_join<A, B>(a: A, b: B) -> (A::Output, B::Output)
where
    A: Future + 'static,
    A::Output: 'static,
    B: Future,
{
    let a = runtime::spawn(a);
    let b = b.await;
    (a.await.expect("task"), b)
}

/// Reads exactly `len` bytes from `s` in a task.
fn read_task<S: OwnedRead + 'static>(s: Rc<S>, len: usize) -> runtime::JoinHandle<Vec<u8>> {
    runtime::spawn(async move {
        let (res, v) = s.read_exact(Vec::with_capacity(len)).await;
        res.expect("read_exact");
        v
    })
}

/// Checks `got` against `want` byte for byte, naming the first difference.
fn assert_same(got: &[u8], want: &[u8], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = got.iter().zip(want).position(|(g, w)| g != w) {
        panic!("{what}: first difference at byte {i}");
    }
}

/// Sends `want` with `send_zc` calls (each may take fewer bytes than
/// offered: the rest goes from where it stopped, through slices of the
/// same buffer) and returns the buffer.
async fn send_zc_all<W>(send: W, want: &[u8]) -> Vec<u8>
where
    W: AsyncSendZc,
{
    let mut buf = want.to_vec();
    let mut sent = 0;
    while sent < want.len() {
        let (res, slice) = send.send_zc_slice(buf.slice(sent..)).await;
        buf = slice.into_inner();
        let n = res.expect("send_zc");
        assert!(n > 0, "send_zc took nothing");
        sent += n;
    }
    buf
}

/// `send_zc` of either stream type, for [`send_zc_all`].
trait AsyncSendZc {
    async fn send_zc_slice(&self, s: Slice<Vec<u8>>) -> BufResult<usize, Slice<Vec<u8>>>;
}

impl AsyncSendZc for &TcpStream {
    async fn send_zc_slice(&self, s: Slice<Vec<u8>>) -> BufResult<usize, Slice<Vec<u8>>> {
        self.send_zc(s).await
    }
}

impl AsyncSendZc for &UnixStream {
    async fn send_zc_slice(&self, s: Slice<Vec<u8>>) -> BufResult<usize, Slice<Vec<u8>>> {
        self.send_zc(s).await
    }
}

#[test]
fn send_zc_64k_over_tcp_arrives_intact() {
    run(|| async {
        let (a, b) = tcp_pair().await;
        let want = pattern(64 * 1024);
        let reader = read_task(Rc::new(b), want.len());
        let buf = send_zc_all(&a, &want).await;
        assert_same(&buf, &want, "returned buffer");
        let got = reader.await.expect("reader");
        assert_same(&got, &want, "received bytes");
    });
}

#[test]
fn send_zc_and_write_all_zc_1m_over_tcp_arrive_intact() {
    run(|| async {
        let (a, b) = tcp_pair().await;
        let b = Rc::new(b);
        let want = pattern(1024 * 1024);
        for round in 0..3 {
            let reader = read_task(b.clone(), want.len());
            let (res, buf) = a.write_all_zc(want.clone()).await;
            res.unwrap_or_else(|e| panic!("write_all_zc round {round}: {e}"));
            assert_same(&buf, &want, "write_all_zc returned buffer");
            let got = reader.await.expect("reader");
            assert_same(&got, &want, "write_all_zc received bytes");

            let reader = read_task(b.clone(), want.len());
            let buf = send_zc_all(&a, &want).await;
            assert_same(&buf, &want, "send_zc returned buffer");
            let got = reader.await.expect("reader");
            assert_same(&got, &want, "send_zc received bytes");
        }
    });
}

/// Unix sockets refuse `SEND_ZC` (`EOPNOTSUPP`): both calls fall back to
/// a plain send and still deliver every byte.
#[test]
fn unix_stream_falls_back_and_arrives_intact() {
    run(|| async {
        let (a, b) = UnixStream::pair().expect("pair");
        let b = Rc::new(b);
        for len in [64 * 1024, 1024 * 1024] {
            let want = pattern(len);
            let reader = read_task(b.clone(), len);
            let (res, buf) = a.write_all_zc(want.clone()).await;
            res.expect("write_all_zc");
            assert_same(&buf, &want, "write_all_zc returned buffer");
            assert_same(&reader.await.expect("reader"), &want, "received bytes");

            let reader = read_task(b.clone(), len);
            let buf = send_zc_all(&a, &want).await;
            assert_same(&buf, &want, "send_zc returned buffer");
            assert_same(&reader.await.expect("reader"), &want, "received bytes");
        }
    });
}

/// Waits (bounded) until the runtime tracks no operation.
async fn until_no_ops(what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while runtime::metrics().ops_in_flight != 0 {
        assert!(
            Instant::now() < deadline,
            "{what}: {} ops still in flight",
            runtime::metrics().ops_in_flight
        );
        sleep(Duration::from_millis(5)).await;
    }
}

/// A send stuck on a peer that does not read is dropped mid-flight: the
/// runtime keeps working, and once the peer drains the socket the
/// notification comes, the parked buffer and descriptor are released
/// (the peer sees EOF), nothing stays in flight and no descriptor leaks.
#[test]
fn dropped_send_zc_releases_everything_after_the_notification() {
    if integration_tests::skip_on_epoll("the zero-copy notification is io_uring's") {
        return;
    }
    run(|| async {
        let fds_before = open_fds();
        let (a, b) = tcp_pair().await;
        // Far more than the socket buffers hold: the send stays in flight.
        let big = pattern(32 * 1024 * 1024);
        let res = timeout(Duration::from_millis(100), a.write_all_zc(big)).await;
        assert!(
            res.is_err(),
            "a 32 MiB send to a peer that never reads completed"
        );
        // The runtime still works: another connection carries data.
        let (c, d) = tcp_pair().await;
        let reader = read_task(Rc::new(d), 5);
        let (res, _) = c.send_zc(b"hello".to_vec()).await;
        assert_eq!(res.expect("send_zc on another stream"), 5);
        assert_eq!(&reader.await.expect("reader")[..], b"hello");
        drop(c);
        // Close our side: its descriptor stays open while the cancelled
        // send holds it, until the notification.
        drop(a);
        // The peer has not read: the kernel still holds the buffer, so the
        // cancelled send waits for its notification, parked in the runtime.
        assert!(
            runtime::metrics().ops_in_flight >= 1,
            "the dropped send_zc ended before its notification"
        );
        // Drain the peer until EOF: the rest of the queued bytes arrive,
        // then the kernel releases the buffer, the op ends, and the
        // descriptor is closed.
        let mut total = 0usize;
        let mut buf = Vec::with_capacity(256 * 1024);
        loop {
            buf.clear();
            let (res, b2) = b.read(buf).await;
            buf = b2;
            match res.expect("peer read") {
                0 => break,
                n => total += n,
            }
        }
        assert!(total > 0, "the peer got nothing of the cancelled send");
        assert!(
            total < 32 * 1024 * 1024,
            "the dropped send was not cancelled"
        );
        drop(b);
        until_no_ops("after the dropped send").await;
        // Closes go through the ring: give them the same bounded wait.
        let deadline = Instant::now() + Duration::from_secs(20);
        while open_fds() > fds_before {
            assert!(
                Instant::now() < deadline,
                "descriptors leaked: {} open, {fds_before} before",
                open_fds()
            );
            sleep(Duration::from_millis(5)).await;
        }
    });
}

/// Restores the default `SIGPIPE` action (the Rust runtime ignores it):
/// a send without `MSG_NOSIGNAL` to a closed peer would then kill the
/// test process.
fn default_sigpipe() {
    // SAFETY: installing the default disposition of a signal.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

fn assert_closed_peer_error(e: &std::io::Error) {
    assert!(
        matches!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
        ),
        "unexpected error for a closed peer: {e:?}"
    );
}

/// Sends to a peer that closed (with a reset) fail with `EPIPE` or
/// `ECONNRESET`, without `SIGPIPE` or panic, and nothing stays in flight.
#[test]
fn send_zc_to_a_closed_peer_is_an_error() {
    run(|| async {
        default_sigpipe();
        let (a, b) = tcp_pair().await;
        // SO_LINGER 0: closing sends a reset at once.
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt reads the live struct it is given.
        let rc = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&b),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "setsockopt");
        drop(b);
        let want = pattern(64 * 1024);
        let mut err = None;
        let mut buf = want.clone();
        for _ in 0..100 {
            let (res, b2) = a.send_zc(buf).await;
            buf = b2;
            if let Err(e) = res {
                err = Some(e);
                break;
            }
            sleep(Duration::from_millis(2)).await;
        }
        let e = err.expect("send_zc kept succeeding on a reset connection");
        assert_closed_peer_error(&e);
        assert_same(&buf, &want, "returned buffer");
        let (res, buf) = a.write_all_zc(buf).await;
        assert_closed_peer_error(&res.expect_err("write_all_zc after the reset"));
        assert_same(&buf, &want, "returned buffer");

        // Unix (the fallback path): EPIPE once the peer is gone.
        let (u, v) = UnixStream::pair().expect("pair");
        drop(v);
        let (res, buf) = u.send_zc(buf).await;
        assert_closed_peer_error(&res.expect_err("send_zc to a closed unix peer"));
        let (res, _) = u.write_all_zc(buf).await;
        assert_closed_peer_error(&res.expect_err("write_all_zc to a closed unix peer"));
        until_no_ops("after the failed sends").await;
    });
}
