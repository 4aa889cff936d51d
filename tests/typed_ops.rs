//! The typed operations of `runtime::op`, each run both ways: submitted
//! to the ring (`submit().await`) and performed as plain system calls
//! (`perform_now`, what a readiness driver does once a descriptor is
//! ready). Both must give the same results and errors, so that the epoll
//! driver can rely on `perform`; and the ring path must keep the
//! lifecycle's promises (a dropped accept leaks no descriptor, a deadline
//! gives the buffer back).

use std::ffi::CString;
use std::io::{self, Read as _};
use std::net::{TcpListener, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use integration_tests::on_runtime;
use runtime::op::{
    self, Accept, Close, Connect, Fsync, Link, MkDirAt, Nop, OpenAt, Operation, PollAdd, PollMulti,
    Read, Readv, Recv, RecvMsg, RenameAt, Send, SendMsg, SharedFd, Shutdown, SockAddrBuf, Socket,
    Statx, Timeout, UnlinkAt, Write, Writev,
};

const LIMIT: Duration = Duration::from_secs(20);

fn shared(fd: impl Into<OwnedFd>) -> SharedFd {
    SharedFd::new(fd.into())
}

fn pair() -> (SharedFd, SharedFd) {
    let (a, b) = UnixStream::pair().unwrap();
    (shared(a), shared(b))
}

fn temp_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("typed-ops-{}-{name}", std::process::id()))
}

fn cpath(p: &std::path::Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).unwrap()
}

/// The address of a socket as `SockAddrBuf`, for connect and sendmsg.
fn sockaddr_of(addr: std::net::SocketAddr) -> SockAddrBuf {
    SockAddrBuf::from(addr)
}

#[test]
fn recv_and_send_agree_both_ways() {
    on_runtime(LIMIT, || async {
        let (a, b) = pair();
        // ring send -> perform recv
        let (n, _) = Send::new(&a, b"ring".to_vec()).submit().await;
        assert_eq!(n.unwrap(), 4);
        let (n, buf) = Recv::new(&b, Vec::with_capacity(16)).perform_now();
        assert_eq!((n.unwrap(), &buf[..]), (4, &b"ring"[..]));
        // perform send -> ring recv, into a Vec with bytes already in it
        let (n, _) = Send::new(&a, b"sys".to_vec()).perform_now();
        assert_eq!(n.unwrap(), 3);
        let mut start = Vec::with_capacity(16);
        start.extend_from_slice(b">");
        let (n, buf) = Recv::new(&b, start).submit().await;
        assert_eq!((n.unwrap(), &buf[..]), (3, &b">sys"[..]));
        // nothing queued: the system call says "not ready", the ring waits
        let (n, _) = Recv::new(&b, Vec::with_capacity(16)).perform_now();
        assert_eq!(n.unwrap_err().kind(), io::ErrorKind::WouldBlock);
        // a closed peer: EOF both ways, then EPIPE on send both ways
        drop(a);
        let (n, _) = Recv::new(&b, Vec::with_capacity(16)).submit().await;
        assert_eq!(n.unwrap(), 0);
        let (n, _) = Recv::new(&b, Vec::with_capacity(16)).perform_now();
        assert_eq!(n.unwrap(), 0);
        let (ring, _) = Send::new(&b, b"x".to_vec()).submit().await;
        let (sys, _) = Send::new(&b, b"x".to_vec()).perform_now();
        assert_eq!(ring.unwrap_err().raw_os_error(), Some(libc::EPIPE));
        assert_eq!(sys.unwrap_err().raw_os_error(), Some(libc::EPIPE));
    });
}

#[test]
fn vectored_messages_with_addresses_agree() {
    on_runtime(LIMIT, || async {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (rx_addr, tx_addr) = (rx.local_addr().unwrap(), tx.local_addr().unwrap());
        let (rx, tx) = (shared(rx), shared(tx));
        let dest = sockaddr_of(rx_addr);
        // ring sendmsg of two pieces -> perform recvmsg with the source
        let (n, _) = SendMsg::new(&tx, vec![b"ab".to_vec(), b"cd".to_vec()], Some(dest))
            .submit()
            .await;
        assert_eq!(n.unwrap(), 4);
        let bufs = vec![Vec::with_capacity(1), Vec::with_capacity(8)];
        let (res, bufs) = RecvMsg::with_source(&rx, bufs).perform_now();
        let (n, from) = res.unwrap();
        assert_eq!((n, &bufs[0][..], &bufs[1][..]), (4, &b"a"[..], &b"bcd"[..]));
        let from = from.expect("the source was asked for");
        assert_eq!(from.to_socket_addr(), Some(tx_addr));
        // perform sendmsg -> ring recvmsg without the source
        let (n, _) = SendMsg::new(&tx, vec![b"xyz".to_vec()], Some(dest)).perform_now();
        assert_eq!(n.unwrap(), 3);
        let (res, bufs) = RecvMsg::new(&rx, vec![Vec::with_capacity(8)])
            .submit()
            .await;
        let (n, from) = res.unwrap();
        assert_eq!((n, &bufs[0][..], from.is_none()), (3, &b"xyz"[..], true));
    });
}

#[test]
fn accept_and_connect_agree() {
    on_runtime(LIMIT, || async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let lfd = shared(listener);
        // ring connect, perform accept (a connection is already queued, so
        // accept4 does not wait on the blocking listener)
        let sock = Socket::new(libc::AF_INET, libc::SOCK_STREAM, 0)
            .submit()
            .await
            .unwrap();
        Connect::new(&sock, sockaddr_of(addr))
            .submit()
            .await
            .unwrap();
        let (server, peer) = Accept::new(&lfd).perform_now().unwrap();
        assert!(server.raw() >= 0);
        assert_eq!(
            peer.to_socket_addr(),
            Some(
                std::net::TcpStream::from(sock.as_fd().try_clone_to_owned().unwrap())
                    .local_addr()
                    .unwrap()
            )
        );
        // the two ends talk
        let (n, _) = Send::new(&sock, b"hello".to_vec()).submit().await;
        assert_eq!(n.unwrap(), 5);
        let (n, buf) = Recv::new(&server, Vec::with_capacity(8)).submit().await;
        assert_eq!((n.unwrap(), &buf[..]), (5, &b"hello"[..]));

        // perform connect on a non-blocking socket: EAGAIN (in progress) or
        // done at once, then SO_ERROR says connected; ring accept
        let sock2 = Socket::new(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0)
            .perform_now()
            .unwrap();
        let mut connect = Connect::new(&sock2, sockaddr_of(addr));
        match connect.perform() {
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
                let events = PollAdd::new(&sock2, libc::POLLOUT as u32)
                    .submit()
                    .await
                    .unwrap();
                assert!(events & libc::POLLOUT as u32 != 0);
                connect.perform().unwrap();
            }
        }
        let (server2, _) = Accept::new(&lfd).submit().await.unwrap();
        let (n, _) = Send::new(&server2, b"ok".to_vec()).perform_now();
        assert_eq!(n.unwrap(), 2);
        let (n, buf) = Recv::new(&sock2, Vec::with_capacity(8)).submit().await;
        assert_eq!((n.unwrap(), &buf[..]), (2, &b"ok"[..]));

        // a refused connection: the same error both ways
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_addr = closed.local_addr().unwrap();
        drop(closed);
        let s = Socket::new(libc::AF_INET, libc::SOCK_STREAM, 0)
            .submit()
            .await
            .unwrap();
        let ring = Connect::new(&s, sockaddr_of(closed_addr)).submit().await;
        let s = Socket::new(libc::AF_INET, libc::SOCK_STREAM, 0)
            .perform_now()
            .unwrap();
        let sys = Connect::new(&s, sockaddr_of(closed_addr)).perform_now();
        assert_eq!(ring.unwrap_err().raw_os_error(), Some(libc::ECONNREFUSED));
        assert_eq!(sys.unwrap_err().raw_os_error(), Some(libc::ECONNREFUSED));
    });
}

/// A typed accept whose future is dropped while a connection is queued:
/// the runtime closes the descriptor the late accept created
/// (`Accept::creates`). Without it the client's connection would stay open.
#[test]
fn dropped_typed_accept_closes_the_late_descriptor() {
    on_runtime(LIMIT, || async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let lfd = shared(listener);
        let client = std::net::TcpStream::connect(addr).unwrap();
        let accept = Accept::new(&lfd).submit();
        drop(accept);
        for _ in 0..1000 {
            if op::in_flight() == 0 {
                break;
            }
            runtime::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(op::in_flight(), 0, "the dropped accept did not end");
        drop(lfd);
        // The accepted socket (if the accept won the race with its cancel)
        // must be closed by the runtime, and a queued one is reset with the
        // listener: either way the client sees the end.
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut byte = [0u8; 1];
        let end = (&client).read(&mut byte);
        assert!(
            matches!(&end, Ok(0))
                || end
                    .as_ref()
                    .is_err_and(|e| e.kind() != io::ErrorKind::WouldBlock),
            "the client's connection stayed open: {end:?}"
        );
    });
}

#[test]
fn file_reads_and_writes_agree() {
    on_runtime(LIMIT, || async {
        let path = temp_path("rw");
        let file = std::fs::File::create_new(&path).unwrap();
        let fd = shared(file);
        // ring write at 0, perform write at 5
        let (n, _) = Write::new(&fd, b"hello".to_vec(), 0).submit().await;
        assert_eq!(n.unwrap(), 5);
        let (n, _) = Write::new(&fd, b" world".to_vec(), 5).perform_now();
        assert_eq!(n.unwrap(), 6);
        // vectored, both ways, at 11
        let (n, _) = Writev::new(&fd, vec![b"!".to_vec(), b"?".to_vec()], 11)
            .submit()
            .await;
        assert_eq!(n.unwrap(), 2);
        let (n, _) = Writev::new(&fd, vec![b"#".to_vec()], 13).perform_now();
        assert_eq!(n.unwrap(), 1);
        Fsync::new(&fd, true).submit().await.unwrap();
        Fsync::new(&fd, false).perform_now().unwrap();
        let (a, ring) = Read::new(&fd, Vec::with_capacity(64), 0).submit().await;
        let (b, sys) = Read::new(&fd, Vec::with_capacity(64), 0).perform_now();
        assert_eq!((a.unwrap(), b.unwrap()), (14, 14));
        assert_eq!(ring, sys);
        assert_eq!(&ring[..], b"hello world!?#");
        let bufs = || vec![Vec::with_capacity(5), Vec::with_capacity(64)];
        let (a, ring) = Readv::new(&fd, bufs(), 0).submit().await;
        let (b, sys) = Readv::new(&fd, bufs(), 0).perform_now();
        assert_eq!((a.unwrap(), b.unwrap()), (14, 14));
        assert_eq!(ring, sys);
        assert_eq!(
            (&ring[0][..], &ring[1][..]),
            (&b"hello"[..], &b" world!?#"[..])
        );
        // past the end: 0 both ways
        let (a, _) = Read::new(&fd, Vec::with_capacity(8), 100).submit().await;
        let (b, _) = Read::new(&fd, Vec::with_capacity(8), 100).perform_now();
        assert_eq!((a.unwrap(), b.unwrap()), (0, 0));
        // a read-only descriptor refuses writes with the same error
        let ro = shared(std::fs::File::open(&path).unwrap());
        let (a, _) = Write::new(&ro, b"x".to_vec(), 0).submit().await;
        let (b, _) = Write::new(&ro, b"x".to_vec(), 0).perform_now();
        assert_eq!(a.unwrap_err().raw_os_error(), Some(libc::EBADF));
        assert_eq!(b.unwrap_err().raw_os_error(), Some(libc::EBADF));
        std::fs::remove_file(&path).unwrap();
    });
}

#[test]
fn paths_and_metadata_agree() {
    on_runtime(LIMIT, || async {
        let dir = temp_path("dir");
        let (d1, d2) = (dir.join("a"), dir.join("b"));
        std::fs::create_dir(&dir).unwrap();
        MkDirAt::new(cpath(&d1), 0o755).submit().await.unwrap();
        MkDirAt::new(cpath(&d2), 0o755).perform_now().unwrap();
        // the same error both ways for an existing directory
        let a = MkDirAt::new(cpath(&d1), 0o755).submit().await;
        let b = MkDirAt::new(cpath(&d1), 0o755).perform_now();
        assert_eq!(a.unwrap_err().raw_os_error(), Some(libc::EEXIST));
        assert_eq!(b.unwrap_err().raw_os_error(), Some(libc::EEXIST));

        let f = dir.join("f");
        let flags = libc::O_CREAT | libc::O_WRONLY | libc::O_EXCL;
        let fd = OpenAt::new(cpath(&f), flags, 0o600).submit().await.unwrap();
        let (n, _) = Write::new(&fd, vec![7u8; 1000], 0).submit().await;
        assert_eq!(n.unwrap(), 1000);
        Close::new(OwnedFd::from(std::fs::File::open(&f).unwrap()))
            .submit()
            .await
            .unwrap();
        let again = OpenAt::new(cpath(&f), flags, 0o600).perform_now();
        assert_eq!(again.unwrap_err().raw_os_error(), Some(libc::EEXIST));
        let ro = OpenAt::new(cpath(&f), libc::O_RDONLY, 0)
            .perform_now()
            .unwrap();

        let by_path = Statx::path(cpath(&f), 0).submit().await.unwrap();
        let by_path_sys = Statx::path(cpath(&f), 0).perform_now().unwrap();
        let by_fd = Statx::fd(&ro).submit().await.unwrap();
        let by_fd_sys = Statx::fd(&fd).perform_now().unwrap();
        for st in [&by_path, &by_path_sys, &by_fd, &by_fd_sys] {
            assert_eq!(st.stx_size, 1000);
            assert_eq!(u32::from(st.stx_mode) & 0o777, 0o600);
            assert_eq!(st.stx_ino, by_path.stx_ino);
        }
        let missing = dir.join("missing");
        let a = Statx::path(cpath(&missing), 0).submit().await;
        let b = Statx::path(cpath(&missing), 0).perform_now();
        assert_eq!(a.unwrap_err().raw_os_error(), Some(libc::ENOENT));
        assert_eq!(b.unwrap_err().raw_os_error(), Some(libc::ENOENT));

        let g = dir.join("g");
        RenameAt::new(cpath(&f), cpath(&g)).submit().await.unwrap();
        RenameAt::new(cpath(&g), cpath(&f)).perform_now().unwrap();
        assert!(f.exists() && !g.exists());
        UnlinkAt::file(cpath(&f)).perform_now().unwrap();
        let a = UnlinkAt::file(cpath(&f)).submit().await;
        assert_eq!(a.unwrap_err().raw_os_error(), Some(libc::ENOENT));
        UnlinkAt::dir(cpath(&d1)).submit().await.unwrap();
        UnlinkAt::dir(cpath(&d2)).perform_now().unwrap();
        UnlinkAt::dir(cpath(&dir)).submit().await.unwrap();
        assert!(!dir.exists());
    });
}

#[test]
fn close_reports_and_releases_the_descriptor() {
    on_runtime(LIMIT, || async {
        let (r, w) = std::io::pipe().unwrap();
        Close::new(OwnedFd::from(w)).submit().await.unwrap();
        // The write end is gone: the read end sees EOF. (Its number may
        // already be reused by another test's thread, so only the EOF
        // proves the close.)
        let mut r = r;
        let mut buf = [0u8; 1];
        assert_eq!(r.read(&mut buf).unwrap(), 0);
        let (r2, w2) = std::io::pipe().unwrap();
        Close::new(OwnedFd::from(w2)).perform_now().unwrap();
        let mut r2 = r2;
        assert_eq!(r2.read(&mut buf).unwrap(), 0);
        // A close never submitted still closes its descriptor when dropped.
        let (r3, w3) = std::io::pipe().unwrap();
        drop(Close::new(OwnedFd::from(w3)));
        let mut r3 = r3;
        assert_eq!(r3.read(&mut buf).unwrap(), 0);
    });
}

#[test]
fn poll_shutdown_nop_and_timeout() {
    on_runtime(LIMIT, || async {
        let (a, b) = pair();
        // nothing to read: perform says not ready
        let none = PollAdd::new(&b, libc::POLLIN as u32).perform_now();
        assert_eq!(none.unwrap_err().kind(), io::ErrorKind::WouldBlock);
        let ready = PollAdd::new(&b, libc::POLLIN as u32).submit();
        Shutdown::new(&a, std::net::Shutdown::Write)
            .submit()
            .await
            .unwrap();
        let events = ready.await.unwrap();
        assert!(events & (libc::POLLIN | libc::POLLRDHUP) as u32 != 0);
        let events = PollAdd::new(&b, libc::POLLIN as u32).perform_now().unwrap();
        assert!(events & libc::POLLIN as u32 != 0);
        let (n, _) = Recv::new(&b, Vec::with_capacity(4)).perform_now();
        assert_eq!(n.unwrap(), 0);
        Shutdown::new(&b, std::net::Shutdown::Write)
            .perform_now()
            .unwrap();
        let (n, _) = Recv::new(&a, Vec::with_capacity(4)).submit().await;
        assert_eq!(n.unwrap(), 0);
        Nop.submit().await.unwrap();
        Nop.perform_now().unwrap();
        op::submit_and_wait(Nop).unwrap();
        let start = std::time::Instant::now();
        let slept = Timeout::new(Duration::from_millis(20)).submit().await;
        if runtime::features().driver == runtime::DriverKind::Epoll {
            // A kernel timer is io_uring's (runtime::time sleeps instead).
            assert_eq!(slept.unwrap_err().kind(), io::ErrorKind::Unsupported);
        } else {
            slept.unwrap();
            assert!(start.elapsed() >= Duration::from_millis(20));
        }
    });
}

/// A multishot poll stays armed: each arrival of bytes posts one more
/// completion (POLLIN), without a new submission, until it is cancelled.
#[test]
fn multishot_poll_reports_every_arrival() {
    if integration_tests::skip_on_epoll("multishot polls and chains are io_uring's") {
        return;
    }
    on_runtime(LIMIT, || async {
        use runtime::op::MultishotOperation as _;
        let (a, b) = pair();
        let mut events = PollMulti::new(&b, libc::POLLIN as u32).start();
        for round in 0..3u8 {
            let (n, _) = Send::new(&a, vec![round]).submit().await;
            assert_eq!(n.unwrap(), 1);
            let c = events.next().await.expect("the poll ended early");
            assert!(c.result().unwrap() & libc::POLLIN as u32 != 0);
            assert!(!events.is_ended(), "a multishot poll ended after one event");
            // Drain the byte, so the next event is a new arrival.
            let (n, buf) = Recv::new(&b, Vec::with_capacity(8)).submit().await;
            assert_eq!((n.unwrap(), buf), (1, vec![round]));
        }
        events.cancel();
        while let Some(c) = events.next().await {
            let _ = c.result();
        }
        assert!(events.is_ended());
    });
}

/// A typed receive with a kernel deadline: nothing arrives, so it ends
/// with `TimedOut` and the buffer comes back unchanged; data in time
/// completes it.
#[test]
fn deadline_gives_the_buffer_back() {
    on_runtime(LIMIT, || async {
        let (a, b) = pair();
        let mut buf = Vec::with_capacity(8);
        buf.push(b'>');
        let (res, buf) = Recv::new(&b, buf)
            .submit_with_timeout(Duration::from_millis(10))
            .await;
        assert_eq!(res.unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert_eq!(&buf[..], b">");
        let (n, _) = Send::new(&a, b"in time".to_vec()).submit().await;
        assert_eq!(n.unwrap(), 7);
        let (res, buf) = Recv::new(&b, buf)
            .submit_with_timeout(Duration::from_secs(10))
            .await;
        assert_eq!(res.unwrap(), 7);
        assert_eq!(&buf[..], b">in time");
    });
}

/// A chain of typed ops: write -> fsync -> read, one submission; a failed
/// head cancels the rest.
#[test]
fn typed_chains() {
    if integration_tests::skip_on_epoll("multishot polls and chains are io_uring's") {
        return;
    }
    on_runtime(LIMIT, || async {
        let path = temp_path("chain");
        let fd = shared(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .unwrap(),
        );
        let mut chain = Link::new();
        let write = chain.push_op(Write::new(&fd, b"linked".to_vec(), 0));
        let sync = chain.push_op(Fsync::new(&fd, false));
        let read = chain.push_op(Read::new(&fd, Vec::with_capacity(16), 0));
        chain.submit().unwrap();
        assert_eq!(write.await.0.unwrap(), 6);
        sync.await.unwrap();
        let (n, buf) = read.await;
        assert_eq!((n.unwrap(), &buf[..]), (6, &b"linked"[..]));

        // A write to a read-only descriptor fails: the rest is cancelled.
        let read_only = shared(std::fs::File::open("/dev/null").unwrap());
        let mut chain = Link::new();
        let head = chain.push_op(Write::new(&read_only, b"x".to_vec(), 0));
        let tail = chain.push_op(Read::new(&fd, Vec::with_capacity(4), 0));
        let timed = chain.push_op_timed(Nop, Duration::from_secs(10));
        chain.submit().unwrap();
        assert_eq!(head.await.0.unwrap_err().raw_os_error(), Some(libc::EBADF));
        let (t, buf) = tail.await;
        assert_eq!(t.unwrap_err().raw_os_error(), Some(libc::ECANCELED));
        assert!(buf.is_empty());
        assert!(timed.await.is_err());
        std::fs::remove_file(&path).unwrap();
    });
}

/// The raw submission path still classifies descriptor-creating SQEs
/// (a raw multishot accept's queued descriptors are closed when the stream
/// is dropped): checked in tests/lifecycle.rs; here, the same listener
/// served by the typed multishot accept hands out working descriptors.
#[test]
fn typed_multishot_accept_hands_out_connections() {
    on_runtime(LIMIT, || async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let lfd = shared(listener);
        let mut stream = op::MultishotOperation::start(op::AcceptMulti::new(&lfd));
        let clients: Vec<_> = (0..3)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        for _ in 0..3 {
            let fd = std::future::poll_fn(|cx| stream.poll_accept(cx))
                .await
                .expect("the multishot goes on")
                .unwrap();
            let (n, _) = Send::new(&fd, b"hi".to_vec()).submit().await;
            assert_eq!(n.unwrap(), 2);
        }
        for mut c in clients {
            let mut buf = [0u8; 2];
            c.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"hi");
        }
        stream.cancel();
        while stream.next().await.is_some() {}
    });
}
