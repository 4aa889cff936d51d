//! Linked operations (`runtime::op::Link`, `IOSQE_IO_LINK` and
//! `IOSQE_IO_HARDLINK`), per-op deadlines (`Op::submit_with_timeout`,
//! `Link::push_timed`: a linked `IORING_OP_LINK_TIMEOUT`), feature probing
//! (`runtime::features`) and fire-and-forget closes under
//! `IOSQE_CQE_SKIP_SUCCESS`.
//!
//! Every test runs under `with_deadline` (a hang is a failure) and waits
//! only on conditions; no verdict depends on a sleep being long enough.
//! After each scenario the runtime must track no operation any more
//! (`ops_in_flight` back to 0: a link timeout never holds a slot).
//!
//! The drop-while-in-flight tests keep every buffer whose op was abandoned
//! in a "graveyard" instead of freeing it: its `Drop` (which runs only when
//! the runtime says the kernel is done with it) fills it with a pattern and
//! keeps the allocation. If the runtime released a buffer before the op's
//! last CQE, the kernel's late write would show up as a changed pattern.

use std::cell::UnsafeCell;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use integration_tests::with_deadline;
use runtime::op::io_uring::{opcode, types};
use runtime::op::{in_flight, Completion, Link, Op, Timed};
use runtime::Runtime;

/// The limit of every test: a healthy run takes well under it.
const LIMIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 fills the two-int array; checked below.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: two fresh descriptors we own.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: plain fcntl calls on a descriptor we own.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        assert!(fl >= 0);
        assert_eq!(libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK), 0);
    }
}

/// Everything readable right now from a non-blocking descriptor.
fn read_available(fd: RawFd) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: reads into a live stack buffer of that size.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
}

fn write_fd(fd: RawFd, data: &[u8]) {
    // SAFETY: writes from a live slice.
    let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
    assert_eq!(
        n,
        data.len() as isize,
        "{}",
        std::io::Error::last_os_error()
    );
}

fn read_sqe(fd: RawFd, buf: &mut [u8]) -> runtime::op::Entry {
    opcode::Read::new(types::Fd(fd), buf.as_mut_ptr(), buf.len() as u32).build()
}

fn write_sqe(fd: RawFd, buf: &mut [u8]) -> runtime::op::Entry {
    opcode::Write::new(types::Fd(fd), buf.as_ptr(), buf.len() as u32).build()
}

fn nop() -> runtime::op::Entry {
    opcode::Nop::new().build()
}

fn errno(c: &Completion) -> Option<i32> {
    c.result().err().and_then(|e| e.raw_os_error())
}

/// Lets the runtime turn until it tracks no operation (bounded by the
/// test's deadline).
async fn settle() {
    while in_flight() != 0 {
        runtime::yield_now().await;
    }
}

fn default_rt() -> Runtime {
    Runtime::new().expect("runtime")
}

fn sqpoll_rt() -> Runtime {
    Runtime::builder()
        .sqpoll(Duration::from_millis(20))
        .build()
        .expect("sqpoll runtime")
}

// ---------------------------------------------------------------------------
// Chains
// ---------------------------------------------------------------------------

#[test]
fn write_then_fsync_chain() {
    if integration_tests::skip_on_epoll("linked chains and kernel deadlines are io_uring's") {
        return;
    }
    with_deadline(LIMIT, || {
        let path = std::env::temp_dir().join(format!("linked-fsync-{}", std::process::id()));
        let file = std::fs::File::create(&path).unwrap();
        let fd = file.as_raw_fd();
        default_rt().block_on(async move {
            let mut chain = Link::new();
            // SAFETY: the write points into the Vec's heap buffer, owned by
            // its op; `file` outlives both ops.
            let (w, s) = unsafe {
                (
                    chain.push(b"hello, chain".to_vec(), |b| write_sqe(fd, b)),
                    chain.push((), |_| opcode::Fsync::new(types::Fd(fd)).build()),
                )
            };
            chain.submit().unwrap();
            let ((wc, buf), (sc, ())) = (w.await, s.await);
            assert_eq!(wc.result().unwrap(), 12);
            assert_eq!(buf, b"hello, chain");
            assert_eq!(sc.result().unwrap(), 0);
            settle().await;
        });
        drop(file);
        assert_eq!(std::fs::read(&path).unwrap(), b"hello, chain");
        std::fs::remove_file(&path).unwrap();
    });
}

/// A buffer shared by a read and the write that follows it in a chain:
/// both ops own a handle, so it lives until the later CQE.
struct Shared(Rc<UnsafeCell<Vec<u8>>>);

impl Shared {
    fn ptr(&self) -> *mut u8 {
        // SAFETY: only the kernel touches the bytes while ops are in
        // flight; we take a raw pointer, no reference.
        unsafe { (*self.0.get()).as_mut_ptr() }
    }
}

#[test]
fn read_then_write_chain_moves_data() {
    if integration_tests::skip_on_epoll("linked chains and kernel deadlines are io_uring's") {
        return;
    }
    with_deadline(LIMIT, || {
        let (r1, w1) = pipe();
        let (r2, w2) = pipe();
        set_nonblocking(r2.as_raw_fd());
        let (r1f, w2f) = (r1.as_raw_fd(), w2.as_raw_fd());
        let payload: Vec<u8> = (0..32u8).collect();
        let expected = payload.clone();
        default_rt().block_on(async move {
            let buf = Rc::new(UnsafeCell::new(vec![0u8; 32]));
            let mut chain = Link::new();
            // SAFETY: both SQEs point into the shared Vec's heap buffer; each
            // op owns an Rc of it, so it lives until the later CQE. The
            // pipes outlive the ops.
            let (r, w) = unsafe {
                (
                    chain.push(Shared(buf.clone()), |b| {
                        opcode::Read::new(types::Fd(r1f), b.ptr(), 32).build()
                    }),
                    chain.push(Shared(buf.clone()), |b| {
                        opcode::Write::new(types::Fd(w2f), b.ptr(), 32).build()
                    }),
                )
            };
            chain.submit().unwrap();
            // The data arrives only after both ops are in the kernel: an
            // unlinked write would already have sent 32 zero bytes.
            for _ in 0..3 {
                runtime::yield_now().await;
            }
            write_fd(w1.as_raw_fd(), &payload);
            let ((rc, _), (wc, _)) = (r.await, w.await);
            assert_eq!(rc.result().unwrap(), 32);
            assert_eq!(wc.result().unwrap(), 32);
            settle().await;
        });
        assert_eq!(read_available(r2.as_raw_fd()), expected);
        drop((r1, w2));
    });
}

fn failed_head(hard: bool) {
    let (r, w) = pipe();
    set_nonblocking(r.as_raw_fd());
    let wfd = w.as_raw_fd();
    default_rt().block_on(async move {
        let mut chain = if hard { Link::hard() } else { Link::new() };
        // SAFETY: the read names no open descriptor (-1) and points into its
        // own Vec; the NOP points at nothing; the write points into its own
        // Vec and the pipe outlives it.
        let (a, b, c) = unsafe {
            (
                chain.push(vec![0u8; 8], |b| read_sqe(-1, b)),
                chain.push((), |_| nop()),
                chain.push(b"after".to_vec(), |b| write_sqe(wfd, b)),
            )
        };
        chain.submit().unwrap();
        let ((a, abuf), (b, ()), (c, cbuf)) = (a.await, b.await, c.await);
        assert_eq!(errno(&a), Some(libc::EBADF));
        assert_eq!(abuf.len(), 8, "each op gets its own data back");
        assert_eq!(cbuf, b"after");
        if hard {
            assert_eq!(b.result().unwrap(), 0);
            assert_eq!(c.result().unwrap(), 5);
        } else {
            assert_eq!(errno(&b), Some(libc::ECANCELED));
            assert_eq!(errno(&c), Some(libc::ECANCELED));
        }
        settle().await;
    });
    let written = read_available(r.as_raw_fd());
    assert_eq!(written, if hard { &b"after"[..] } else { &b""[..] });
}

#[test]
fn failed_head_cancels_the_rest_of_a_link() {
    if integration_tests::skip_on_epoll("linked chains and kernel deadlines are io_uring's") {
        return;
    }
    with_deadline(LIMIT, || failed_head(false));
}

#[test]
fn failed_head_does_not_stop_a_hardlink() {
    if integration_tests::skip_on_epoll("linked chains and kernel deadlines are io_uring's") {
        return;
    }
    with_deadline(LIMIT, || failed_head(true));
}

#[test]
fn unsubmitted_chain_completes_its_ops_with_ecanceled() {
    if integration_tests::skip_on_epoll("linked chains and kernel deadlines are io_uring's") {
        return;
    }
    with_deadline(LIMIT, || {
        default_rt().block_on(async {
            let (a, b) = {
                let mut chain = Link::new();
                // SAFETY: NOPs point at nothing.
                unsafe { (chain.push(1u8, |_| nop()), chain.push(2u8, |_| nop())) }
                // dropped unsubmitted
            };
            let ((a, one), (b, two)) = (a.await, b.await);
            assert_eq!((errno(&a), one), (Some(libc::ECANCELED), 1));
            assert_eq!((errno(&b), two), (Some(libc::ECANCELED), 2));
            assert_eq!(in_flight(), 0);
        });
    });
}

#[test]
fn op_dropped_before_its_chain_was_submitted() {
    if integration_tests::skip_on_epoll("linked chains and kernel deadlines are io_uring's") {
        return;
    }
    with_deadline(LIMIT, || {
        let (r, w) = pipe();
        let rfd = r.as_raw_fd();
        default_rt().block_on(async move {
            let mut chain = Link::new();
            // SAFETY: the read points into its own Vec; the pipe outlives it
            // (the runtime waits for its CQE below).
            let read = unsafe { chain.push(vec![0u8; 8], |b| read_sqe(rfd, b)) };
            // SAFETY: a NOP points at nothing.
            let after = unsafe { chain.push((), |_| nop()) };
            drop(read);
            chain.submit().unwrap();
            // The dropped read is cancelled once the chain is out, so the
            // NOP after it is cancelled too; nothing hangs on the empty pipe.
            let (c, ()) = after.await;
            assert_eq!(errno(&c), Some(libc::ECANCELED));
            settle().await;
        });
        drop(w);
    });
}

// ---------------------------------------------------------------------------
// Deadlines (IORING_OP_LINK_TIMEOUT)
// ---------------------------------------------------------------------------

fn recv_sqe(fd: RawFd, buf: &mut Vec<u8>) -> runtime::op::Entry {
    opcode::Recv::new(types::Fd(fd), buf.as_mut_ptr(), buf.len() as u32).build()
}

fn timed_read_no_data(rt: Runtime) {
    let (a, b) = UnixStream::pair().unwrap();
    let fd = a.as_raw_fd();
    rt.block_on(async move {
        let before = runtime::metrics().cqes_reaped;
        // SAFETY: the receive points into its own Vec; `a` outlives it.
        let op = unsafe {
            Op::submit_with_timeout(
                vec![0u8; 16],
                |v| recv_sqe(fd, v),
                Duration::from_millis(20),
            )
        };
        let (res, buf) = op.await;
        let err = res.expect_err("nothing was sent: the deadline must cancel the receive");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(err.raw_os_error(), Some(libc::ETIMEDOUT));
        assert_eq!(buf.len(), 16);
        settle().await;
        let cqes = runtime::metrics().cqes_reaped - before;
        eprintln!("timed-out receive: {cqes} CQE(s) reaped");
        assert!(cqes <= 2, "{cqes} CQEs for one timed op");
    });
    drop(b);
}

#[test]
fn read_with_deadline_times_out_when_no_data_comes() {
    if integration_tests::skip_on_epoll("linked chains and kernel deadlines are io_uring's") {
        return;
    }
    with_deadline(LIMIT, || timed_read_no_data(default_rt()));
}

#[test]
fn read_with_deadline_times_out_when_no_data_comes_sqpoll() {
    if integration_tests::skip_on_epoll("linked chains and kernel deadlines are io_uring's") {
        return;
    }
    with_deadline(LIMIT, || timed_read_no_data(sqpoll_rt()));
}

#[test]
fn read_with_deadline_times_out_on_tcp() {
    if integration_tests::skip_on_epoll("linked chains and kernel deadlines are io_uring's") {
        return;
    }
    with_deadline(LIMIT, || {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let fd = server.as_raw_fd();
        default_rt().block_on(async move {
            // SAFETY: the receive points into its own Vec; `server` outlives it.
            let op = unsafe {
                Op::submit_with_timeout(
                    vec![0u8; 16],
                    |v| recv_sqe(fd, v),
                    Duration::from_millis(20),
                )
            };
            let (res, _) = op.await;
            assert_eq!(res.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
            settle().await;
        });
        drop((client, server));
    });
}

fn timed_read_data_in_time(rt: Runtime) {
    let (a, mut b) = UnixStream::pair().unwrap();
    let fd = a.as_raw_fd();
    rt.block_on(async move {
        // Data already there.
        b.write_all(b"early").unwrap();
        let before = runtime::metrics().cqes_reaped;
        // SAFETY: the receive points into its own Vec; `a` outlives it.
        let op = unsafe {
            Op::submit_with_timeout(vec![0u8; 16], |v| recv_sqe(fd, v), Duration::from_secs(10))
        };
        let (res, buf) = op.await;
        assert_eq!(res.unwrap().result().unwrap(), 5);
        assert_eq!(&buf[..5], b"early");
        settle().await;
        let cqes = runtime::metrics().cqes_reaped - before;
        eprintln!("receive done before its deadline: {cqes} CQE(s) reaped");
        assert!(cqes <= 2, "{cqes} CQEs for one timed op");

        // Data arriving while the receive waits in the kernel.
        // SAFETY: as above.
        let op: Timed<Vec<u8>> =
            unsafe { Op::submit_with_timeout(buf, |v| recv_sqe(fd, v), Duration::from_secs(10)) };
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            b.write_all(b"late").unwrap();
            b
        });
        let (res, buf) = op.await;
        assert_eq!(res.unwrap().result().unwrap(), 4);
        assert_eq!(&buf[..4], b"late");
        settle().await;
        drop(writer.join().unwrap());
    });
}

#[test]
fn read_with_deadline_gets_data_that_comes_in_time() {
    if integration_tests::skip_on_epoll("linked chains and kernel deadlines are io_uring's") {
        return;
    }
    with_deadline(LIMIT, || timed_read_data_in_time(default_rt()));
}

#[test]
fn read_with_deadline_gets_data_that_comes_in_time_sqpoll() {
    if integration_tests::skip_on_epoll("linked chains and kernel deadlines are io_uring's") {
        return;
    }
    with_deadline(LIMIT, || timed_read_data_in_time(sqpoll_rt()));
}

#[test]
fn many_timed_ops_leave_no_slot_behind() {
    if integration_tests::skip_on_epoll("linked chains and kernel deadlines are io_uring's") {
        return;
    }
    with_deadline(LIMIT, || {
        let (a, mut b) = UnixStream::pair().unwrap();
        let fd = a.as_raw_fd();
        Runtime::builder()
            .entries(8)
            .build()
            .unwrap()
            .block_on(async move {
                let mut buf = vec![0u8; 8];
                for i in 0..200u32 {
                    let timed_out = i % 2 == 0;
                    if !timed_out {
                        b.write_all(&i.to_ne_bytes()).unwrap();
                    }
                    let d = Duration::from_millis(if timed_out { 1 } else { 10_000 });
                    // SAFETY: the receive points into its own Vec; `a`
                    // outlives it.
                    let op = unsafe { Op::submit_with_timeout(buf, |v| recv_sqe(fd, v), d) };
                    let (res, back) = op.await;
                    buf = back;
                    if timed_out {
                        assert_eq!(res.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
                    } else {
                        assert_eq!(res.unwrap().result().unwrap(), 4);
                        assert_eq!(buf[..4], i.to_ne_bytes());
                    }
                    assert_eq!(in_flight(), 0, "round {i}: a link timeout kept a slot");
                }
            });
    });
}

fn timed_head_of_chain(hard: bool) {
    let (a, b) = UnixStream::pair().unwrap();
    let (r, w) = pipe();
    set_nonblocking(r.as_raw_fd());
    let (fd, wfd) = (a.as_raw_fd(), w.as_raw_fd());
    default_rt().block_on(async move {
        let mut chain = if hard { Link::hard() } else { Link::new() };
        // SAFETY: each SQE points into its own Vec; the socket and pipe
        // outlive the ops.
        let (read, write) = unsafe {
            (
                chain.push_timed(vec![0u8; 8], |v| recv_sqe(fd, v), Duration::from_millis(20)),
                chain.push(b"next".to_vec(), |v| write_sqe(wfd, v)),
            )
        };
        assert_eq!(chain.len(), 3, "op, link timeout, op");
        chain.submit().unwrap();
        let ((rres, _), (wc, _)) = (read.await, write.await);
        assert_eq!(rres.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
        if hard {
            assert_eq!(wc.result().unwrap(), 4);
        } else {
            assert_eq!(errno(&wc), Some(libc::ECANCELED));
        }
        settle().await;
    });
    let expected: &[u8] = if hard { b"next" } else { b"" };
    assert_eq!(read_available(r.as_raw_fd()), expected);
    drop(b);
}

#[test]
fn timed_op_in_a_link_cancels_the_rest() {
    if integration_tests::skip_on_epoll("linked chains and kernel deadlines are io_uring's") {
        return;
    }
    with_deadline(LIMIT, || timed_head_of_chain(false));
}

#[test]
fn timed_op_in_a_hardlink_lets_the_rest_run() {
    if integration_tests::skip_on_epoll("linked chains and kernel deadlines are io_uring's") {
        return;
    }
    with_deadline(LIMIT, || timed_head_of_chain(true));
}

// ---------------------------------------------------------------------------
// Small submission queue: a chain is never split
// ---------------------------------------------------------------------------

#[test]
fn chain_longer_than_the_submission_queue_is_rejected() {
    if integration_tests::skip_on_epoll("linked chains and kernel deadlines are io_uring's") {
        return;
    }
    with_deadline(LIMIT, || {
        let rt = Runtime::builder().entries(8).build().unwrap();
        rt.block_on(async {
            let mut chain = Link::new();
            assert_eq!(chain.capacity(), 8);
            // SAFETY: NOPs point at nothing.
            let ops: Vec<Op<usize>> = (0..9)
                .map(|i| unsafe { chain.push(i, |_| nop()) })
                .collect();
            let err = chain.submit().unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
            assert!(err.to_string().contains("submission queue of 8"), "{err}");
            for (i, op) in ops.into_iter().enumerate() {
                let (c, data) = op.await;
                assert_eq!((errno(&c), data), (Some(libc::EINVAL), i));
            }
            assert_eq!(in_flight(), 0);
        });
    });
}

#[test]
fn chain_that_fills_the_queue_is_not_split_by_a_flush() {
    if integration_tests::skip_on_epoll("linked chains and kernel deadlines are io_uring's") {
        return;
    }
    with_deadline(LIMIT, || {
        let rt = Runtime::builder().entries(8).build().unwrap();
        rt.block_on(async {
            for round in 0..20 {
                // Occupy part of the queue first, so the chain only fits
                // after a flush.
                // SAFETY: NOPs point at nothing.
                let before: Vec<Op<()>> = (0..(round % 8) + 1)
                    .map(|_| unsafe { Op::submit((), |_| nop()) })
                    .collect();
                let mut chain = Link::new();
                // SAFETY: the read names no descriptor (fails with EBADF)
                // and points into its own Vec; NOPs point at nothing.
                let head = unsafe { chain.push(vec![0u8; 4], |b| read_sqe(-1, b)) };
                let rest: Vec<Op<()>> = (0..7)
                    // SAFETY: NOPs point at nothing.
                    .map(|_| unsafe { chain.push((), |_| nop()) })
                    .collect();
                chain.submit().unwrap();
                assert_eq!(errno(&head.await.0), Some(libc::EBADF));
                for (i, op) in rest.into_iter().enumerate() {
                    // A split chain would run its second part: a NOP that
                    // succeeded.
                    assert_eq!(
                        errno(&op.await.0),
                        Some(libc::ECANCELED),
                        "round {round}: op {} of the chain ran: the chain was split",
                        i + 1
                    );
                }
                for op in before {
                    assert_eq!(op.await.0.result().unwrap(), 0);
                }
                assert_eq!(in_flight(), 0);
            }
        });
    });
}

// ---------------------------------------------------------------------------
// Dropped mid-flight: buffers live until their own CQE
// ---------------------------------------------------------------------------

/// The byte a buffer is filled with once the runtime let go of it.
const PATTERN: u8 = 0xDB;

/// Buffers the runtime released, kept allocated and filled with
/// [`PATTERN`]: a later kernel write into one shows as a changed byte.
static GRAVEYARD: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
/// Serialises the tests that use the graveyard.
static GRAVEYARD_LOCK: Mutex<()> = Mutex::new(());
static BURIED: AtomicUsize = AtomicUsize::new(0);

/// A read buffer that goes to the graveyard when dropped.
struct Tomb(Vec<u8>);

impl Drop for Tomb {
    fn drop(&mut self) {
        let mut v = std::mem::take(&mut self.0);
        v.iter_mut().for_each(|b| *b = PATTERN);
        GRAVEYARD.lock().unwrap_or_else(|e| e.into_inner()).push(v);
        BURIED.fetch_add(1, Ordering::SeqCst);
    }
}

/// A chain read → write and a timed read, dropped while the kernel still
/// waits for data; then the data comes. With `drop_runtime`, the runtime is
/// dropped with everything in flight instead of awaiting the cleanup.
fn drop_mid_flight(rt: Runtime, rounds: usize, drop_runtime: bool) {
    let (r1, w1) = pipe();
    let (r2, w2) = pipe();
    set_nonblocking(r2.as_raw_fd());
    let (a, b) = UnixStream::pair().unwrap();
    let (r1f, w1f, w2f, afd) = (
        r1.as_raw_fd(),
        w1.as_raw_fd(),
        w2.as_raw_fd(),
        a.as_raw_fd(),
    );
    let r2f = r2.as_raw_fd();
    let mut b2 = b.try_clone().unwrap();
    BURIED.store(0, Ordering::SeqCst);
    rt.block_on(async move {
        for _ in 0..rounds {
            let shared = Rc::new(UnsafeCell::new(vec![0u8; 64]));
            let mut chain = Link::new();
            // SAFETY: every SQE points into heap memory its op owns (the
            // Tomb's Vec, the shared Vec through an Rc each); the
            // descriptors outlive the runtime.
            unsafe {
                let read = chain.push((Tomb(vec![0u8; 64]), Shared(shared.clone())), |(t, _)| {
                    opcode::Read::new(types::Fd(r1f), t.0.as_mut_ptr(), 64).build()
                });
                let write = chain.push(Shared(shared), |s| {
                    opcode::Write::new(types::Fd(w2f), s.ptr(), 64).build()
                });
                let timed = Op::submit_with_timeout(
                    Tomb(vec![0u8; 64]),
                    |t| opcode::Recv::new(types::Fd(afd), t.0.as_mut_ptr(), 64).build(),
                    Duration::from_secs(30),
                );
                chain.submit().unwrap();
                runtime::yield_now().await;
                drop((read, write, timed));
            }
            // The data the abandoned reads waited for.
            write_fd(w1f, &[7u8; 64]);
            b2.write_all(&[9u8; 64]).unwrap();
            if !drop_runtime {
                settle().await;
                read_available(r2f);
            }
        }
    });
    drop(rt);
    let buried = BURIED.load(Ordering::SeqCst);
    assert_eq!(
        buried,
        2 * rounds,
        "every abandoned buffer is released exactly once"
    );
    // Every op is over now: no CQE can come any more.
    let graves = std::mem::take(&mut *GRAVEYARD.lock().unwrap());
    for (i, g) in graves.iter().enumerate() {
        if let Some(pos) = g.iter().position(|&x| x != PATTERN) {
            panic!("buffer {i} was written at byte {pos} after the runtime released it");
        }
    }
    drop((r1, w1, r2, w2, a, b));
}

#[test]
fn chain_and_timed_op_dropped_mid_flight() {
    if integration_tests::skip_on_epoll("linked chains and kernel deadlines are io_uring's") {
        return;
    }
    let _g = GRAVEYARD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    with_deadline(LIMIT, || drop_mid_flight(default_rt(), 50, false));
}

#[test]
fn chain_and_timed_op_dropped_mid_flight_sqpoll() {
    if integration_tests::skip_on_epoll("linked chains and kernel deadlines are io_uring's") {
        return;
    }
    let _g = GRAVEYARD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    with_deadline(LIMIT, || drop_mid_flight(sqpoll_rt(), 50, false));
}

#[test]
fn runtime_dropped_with_chains_in_flight() {
    if integration_tests::skip_on_epoll("linked chains and kernel deadlines are io_uring's") {
        return;
    }
    let _g = GRAVEYARD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    with_deadline(LIMIT, || drop_mid_flight(default_rt(), 20, true));
    with_deadline(LIMIT, || drop_mid_flight(sqpoll_rt(), 20, true));
}

// ---------------------------------------------------------------------------
// Probing
// ---------------------------------------------------------------------------

/// `(major, minor)` of the running kernel.
fn kernel_version() -> (u32, u32) {
    let mut s = String::new();
    std::fs::File::open("/proc/sys/kernel/osrelease")
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    let mut it = s.trim().split(|c: char| !c.is_ascii_digit());
    let major = it.next().unwrap().parse().unwrap();
    let minor = it.next().unwrap().parse().unwrap();
    (major, minor)
}

#[test]
fn probe_reports_what_this_kernel_has() {
    if integration_tests::skip_on_epoll("linked chains and kernel deadlines are io_uring's") {
        return;
    }
    with_deadline(LIMIT, || {
        let version = kernel_version();
        assert!(version >= (6, 1), "these assertions are for a 6.1+ kernel");
        default_rt().block_on(async move {
            let f = runtime::features();
            eprintln!("kernel {version:?}: {f:?}");
            assert!(f.link_timeout && f.supports(opcode::LinkTimeout::CODE));
            assert!(f.send_zc && f.supports(opcode::SendZc::CODE));
            assert!(f.supports(opcode::Read::CODE) && f.supports(opcode::AsyncCancel::CODE));
            assert!(!f.supports(255), "no kernel has opcode 255");
            assert!(f.skip_success, "IORING_FEAT_CQE_SKIP is 5.17+");
            assert!(f.buffer_rings, "buffer rings are 5.19+");
            assert!(f.multishot_recv, "multishot receive is 6.0+");
            assert_eq!(f.recv_bundle, version >= (6, 10), "bundles are 6.10+");
            assert!(
                f.defer_taskrun && f.single_issuer,
                "the default setup on 6.1+"
            );
            assert!(!f.sqpoll);
            assert_eq!(f.setup_flags, runtime::metrics().setup_flags);
            assert!(f.opcode_count() > 40);
        });
        sqpoll_rt().block_on(async {
            let f = runtime::features();
            assert!(f.sqpoll, "a Builder::sqpoll runtime reports SQPOLL");
            assert!(!f.defer_taskrun, "DEFER_TASKRUN does not go with SQPOLL");
        });
    });
}

// ---------------------------------------------------------------------------
// Fire-and-forget cancels (IOSQE_CQE_SKIP_SUCCESS)
// ---------------------------------------------------------------------------

#[test]
fn successful_cancel_posts_no_cqe() {
    if integration_tests::skip_on_epoll("linked chains and kernel deadlines are io_uring's") {
        return;
    }
    with_deadline(LIMIT, || {
        let (r, w) = pipe();
        let rfd = r.as_raw_fd();
        default_rt().block_on(async move {
            assert!(runtime::features().skip_success);
            for round in 0..20 {
                // SAFETY: the read points into its own Vec; the pipe outlives
                // the runtime.
                let op = unsafe { Op::submit(vec![0u8; 8], |b| read_sqe(rfd, b)) };
                // Let the read reach the kernel (and wait there: the pipe is
                // empty).
                runtime::yield_now().await;
                runtime::yield_now().await;
                let before = runtime::metrics().cqes_reaped;
                drop(op);
                settle().await;
                // The read's own -ECANCELED, and nothing for the cancel that
                // succeeded. (Nothing writes the wake-up eventfd here.)
                let cqes = runtime::metrics().cqes_reaped - before;
                assert_eq!(cqes, 1, "round {round}: {cqes} CQEs for a cancelled read");
            }
        });
        drop(w);
    });
}

/// A chain made on one runtime and pushed to on another would carry SQEs
/// naming the second runtime's tables into the first one's ring: refused.
#[test]
fn a_chain_pushed_to_on_another_runtime_panics() {
    if integration_tests::skip_on_epoll("linked chains and kernel deadlines are io_uring's") {
        return;
    }
    with_deadline(LIMIT, || {
        let rt1 = Runtime::new().unwrap();
        let rt2 = Runtime::new().unwrap();
        let mut chain = rt1.block_on(async { Link::new() });
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rt2.block_on(async {
                // SAFETY: a NOP points at no memory.
                let _op = unsafe { chain.push((), |_| opcode::Nop::new().build()) };
            })
        }));
        let msg = res.unwrap_err();
        let msg = msg
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| msg.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        assert!(msg.contains("another runtime"), "{msg}");
        // On its own runtime the chain works.
        rt1.block_on(async {
            // SAFETY: a NOP points at no memory.
            let op = unsafe { chain.push(5u8, |_| opcode::Nop::new().build()) };
            chain.submit().unwrap();
            let (c, five) = op.await;
            assert_eq!((c.result().unwrap(), five), (0, 5));
        });
    });
}
