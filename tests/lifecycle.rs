//! Integration tests of the op lifecycle (`runtime::op`), against the
//! invariants of `DESIGN.md` ("The op lifecycle"):
//!
//! * the data an operation's SQE points at lives until the operation's last
//!   CQE, even when the future is dropped first (it is parked in the
//!   runtime, the op is cancelled, and the data is dropped exactly once when
//!   the final CQE arrives, whatever it says);
//! * a CQE that arrives before the future's first poll is not lost;
//! * multishot results are queued in order while nobody polls, and the slot
//!   is freed only after the last CQE was handed out;
//! * dropping the runtime with ops in flight cancels them and drops their
//!   data exactly once, after the kernel let go of it;
//! * a cancelled multishot operation ends, even when the cancel reaches the
//!   kernel between two shots;
//! * a tiny ring (8 entries) drives 20,000 concurrent operations;
//! * aborting a task drops its in-flight op through the same path;
//! * a descriptor created by an op whose future is gone is closed.
//!
//! Every test runs under `with_deadline`, so a hang is a failure, and waits
//! only on conditions, each bounded by a wall-clock limit; no test relies on
//! a sleep being long enough for its verdict (the few sleeps only make a
//! race likely or let results pile up, and are documented as such).

use std::cell::Cell;
use std::future::Future;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use integration_tests::with_deadline;
use runtime::op::io_uring::{opcode, squeue, types};
use runtime::op::{in_flight, Completion, Multishot, Op};
use runtime::Runtime;

/// The limit of every test: generous, a healthy run takes well under it.
const LIMIT: Duration = Duration::from_secs(30);
/// The limit of a single bounded wait inside a test.
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Drop counters and last-seen buffer contents of a set of [`Tracked`]
/// resources, shared between the test and the resources (which may be
/// dropped inside the runtime).
struct Probe {
    drops: Vec<AtomicUsize>,
    contents: Mutex<Vec<Option<Vec<u8>>>>,
}

impl Probe {
    fn new(n: usize) -> Arc<Probe> {
        Arc::new(Probe {
            drops: (0..n).map(|_| AtomicUsize::new(0)).collect(),
            contents: Mutex::new(vec![None; n]),
        })
    }

    /// A resource with a zeroed buffer of `len` bytes, reporting as `idx`.
    fn tracked(self: &Arc<Self>, idx: usize, len: usize) -> Tracked {
        Tracked {
            buf: vec![0; len],
            idx,
            probe: self.clone(),
        }
    }

    /// How many times resource `idx` was dropped.
    fn drops(&self, idx: usize) -> usize {
        self.drops[idx].load(Ordering::SeqCst)
    }

    /// How many drops in total.
    fn total(&self) -> usize {
        self.drops.iter().map(|d| d.load(Ordering::SeqCst)).sum()
    }

    /// The buffer of resource `idx` as it was when dropped.
    fn contents(&self, idx: usize) -> Vec<u8> {
        self.contents.lock().unwrap()[idx]
            .clone()
            .unwrap_or_else(|| panic!("resource {idx} was not dropped"))
    }
}

/// The data of a read op: a heap buffer the kernel writes into, which on
/// drop records its contents and counts the drop in its [`Probe`].
struct Tracked {
    buf: Vec<u8>,
    idx: usize,
    probe: Arc<Probe>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        // Contents first, then the counter: whoever sees the count sees the
        // contents.
        self.probe.contents.lock().unwrap()[self.idx] = Some(self.buf.clone());
        self.probe.drops[self.idx].fetch_add(1, Ordering::SeqCst);
    }
}

/// A pipe `(read end, write end)`, both blocking (a non-blocking read end
/// would make io_uring fail the read with `EAGAIN` instead of waiting).
fn pipe() -> (RawFd, RawFd) {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two descriptors into the two-int array.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    (fds[0], fds[1])
}

fn close(fd: RawFd) {
    // SAFETY: the test owns `fd` and closes it once, after every op on it
    // is over.
    let rc = unsafe { libc::close(fd) };
    assert_eq!(rc, 0, "close({fd}): {}", std::io::Error::last_os_error());
}

/// Writes all of `bytes` with one `write(2)` (pipe writes up to PIPE_BUF
/// are atomic).
fn write_all(fd: RawFd, bytes: &[u8]) {
    // SAFETY: writes from a live slice of the given length.
    let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    assert_eq!(
        n,
        bytes.len() as isize,
        "write: {}",
        std::io::Error::last_os_error()
    );
}

/// Reads what is in the pipe without blocking (switches `fd` to
/// non-blocking for good; only call once no io_uring op uses it).
fn read_nonblocking(fd: RawFd) -> Vec<u8> {
    // SAFETY: fcntl on a descriptor the test owns.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    assert!(flags >= 0);
    // SAFETY: as above.
    let set = unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) };
    assert_eq!(set, 0);
    let mut buf = [0u8; 256];
    // SAFETY: reads into a live stack buffer of the given length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        let err = std::io::Error::last_os_error();
        assert_eq!(err.raw_os_error(), Some(libc::EAGAIN), "read: {err}");
        return Vec::new();
    }
    buf[..n as usize].to_vec()
}

/// Submits a read of `fd` into the resource's buffer.
///
/// # Safety
///
/// `fd` must stay open until the op's last CQE.
unsafe fn read_op(fd: RawFd, data: Tracked) -> Op<Tracked> {
    // SAFETY: forwarded.
    unsafe { read_op_flags(fd, data, squeue::Flags::empty()) }
}

/// Like [`read_op`], with SQE flags: `squeue::Flags::ASYNC` makes the
/// kernel run the read as a blocking read on an io-wq worker thread, which
/// then writes into the buffer from another CPU as soon as data arrives.
///
/// # Safety
///
/// As for [`read_op`].
unsafe fn read_op_flags(fd: RawFd, data: Tracked, flags: squeue::Flags) -> Op<Tracked> {
    // SAFETY: the SQE points only into `buf`'s heap allocation, owned by
    // the op's data; the caller keeps `fd` open.
    unsafe {
        Op::submit(data, |t| {
            opcode::Read::new(types::Fd(fd), t.buf.as_mut_ptr(), t.buf.len() as u32)
                .build()
                .flags(flags)
        })
    }
}

/// Submits a (single-shot) relative timeout of `d`; its timespec is boxed
/// in the op's data.
fn timeout_op(d: Duration) -> Op<Box<types::Timespec>> {
    // SAFETY: the SQE points only at the boxed timespec, owned by the op's
    // data (its heap address survives moves of the Box).
    unsafe {
        Op::submit(Box::new(types::Timespec::from(d)), |ts| {
            opcode::Timeout::new(&**ts as *const types::Timespec).build()
        })
    }
}

/// Lets the runtime turn (`yield_now`, which submits and reaps) until
/// `cond` holds; fails after [`WAIT`].
async fn turn_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "gave up after {WAIT:?} waiting until {what} (in_flight = {})",
            in_flight()
        );
        runtime::yield_now().await;
    }
}

/// Lets the runtime turn `n` times.
async fn turns(n: usize) {
    for _ in 0..n {
        runtime::yield_now().await;
    }
}

/// Polls `fut` once with a no-op waker.
fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    Pin::new(fut).poll(&mut cx)
}

/// Runs `f`'s future on a fresh default runtime, on its own thread, within
/// [`LIMIT`].
fn run<F, Fut>(f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    with_deadline(LIMIT, move || runtime::block_on(f()));
}

// ---------------------------------------------------------------------------
// 1. An op dropped before its CQE
// ---------------------------------------------------------------------------

/// How one drop-then-write race ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RaceOutcome {
    /// The read completed after its future was dropped: the kernel wrote
    /// into the parked, still-live buffer.
    KernelWroteParkedBuffer,
    /// The cancel won: the bytes are still in the pipe.
    CancelledBeforeRead,
}

/// One round of the race: a read on an empty pipe is in the kernel, its
/// future is dropped, and bytes are written into the pipe before the
/// runtime turns again (so the kernel may fill the buffer after the future
/// is gone, racing the cancel). With `io_wq`, the read runs on an io-wq
/// worker (`IOSQE_ASYNC`), which copies the bytes into the parked buffer
/// from another thread, usually before the cancel is even submitted.
async fn drop_then_write_round(round: usize, io_wq: bool) -> RaceOutcome {
    let payload = format!("race-{round:05}");
    let payload = payload.as_bytes();
    let (r, w) = pipe();
    let probe = Probe::new(1);
    // SAFETY: `r` is closed only after the resource was dropped, i.e. after
    // the op's last CQE.
    let flags = if io_wq {
        squeue::Flags::ASYNC
    } else {
        squeue::Flags::empty()
    };
    // SAFETY: as above.
    let op = unsafe { read_op_flags(r, probe.tracked(0, 64), flags) };
    // One turn: the read is submitted and, the pipe being empty, waits in
    // the kernel.
    runtime::yield_now().await;
    assert_eq!(in_flight(), 1, "the read must be in flight");

    drop(op);
    // Before the runtime turns again: the kernel may now complete the read
    // into memory whose future is gone.
    write_all(w, payload);

    assert_eq!(
        probe.drops(0),
        0,
        "the buffer was freed when the future was dropped, while the kernel may still write into it"
    );
    assert_eq!(
        in_flight(),
        1,
        "the dropped op's slot must live until its final CQE"
    );

    turn_until("the parked buffer is dropped", || probe.total() == 1).await;
    assert_eq!(in_flight(), 0, "the slot must be freed with the buffer");

    let buf = probe.contents(0);
    let in_pipe = read_nonblocking(r);
    let outcome = if buf.starts_with(payload) {
        assert!(
            buf[payload.len()..].iter().all(|&b| b == 0),
            "the kernel wrote more than the payload: {buf:?}"
        );
        assert!(
            in_pipe.is_empty(),
            "the read took the bytes, yet {in_pipe:?} is still in the pipe"
        );
        RaceOutcome::KernelWroteParkedBuffer
    } else {
        assert!(
            buf.iter().all(|&b| b == 0),
            "the buffer holds neither the payload nor zeros: {buf:?}"
        );
        assert_eq!(
            in_pipe, payload,
            "the cancelled read did not take the bytes, so they must still be in the pipe"
        );
        RaceOutcome::CancelledBeforeRead
    };

    // Exactly once, also after more turns.
    turns(3).await;
    assert_eq!(probe.drops(0), 1, "the buffer must be dropped exactly once");
    close(r);
    close(w);
    outcome
}

/// Dropping a read's future while the read is in the kernel, then writing
/// to the pipe before the runtime turns: the buffer is not freed with the
/// future (drop count 0, slot still counted by `in_flight()`), it is freed
/// exactly once after the final CQE, and either it holds the written bytes
/// (the read won the race and the kernel wrote into parked, live memory)
/// or the bytes are still in the pipe (the cancel won). Repeated, half of
/// the rounds with the read on an io-wq worker (`IOSQE_ASYNC`), to cover
/// both sides of the race: with the ring's deferred task work the poll-
/// driven read always loses to the cancel, while the io-wq worker usually
/// copies the bytes into the parked buffer first.
#[test]
fn dropped_op_keeps_buffer_alive_while_kernel_writes_into_it() {
    if integration_tests::skip_on_epoll("raw io_uring SQEs (Op::submit) and the kernel holding a dropped op's memory are io_uring's") {
        return;
    }
    run(|| async {
        // [poll-driven, io-wq] x [kernel wrote, cancel won]
        let mut tally = [[0usize; 2]; 2];
        for round in 0..200 {
            let io_wq = round % 2 == 1;
            let outcome = drop_then_write_round(round, io_wq).await;
            tally[io_wq as usize][(outcome == RaceOutcome::CancelledBeforeRead) as usize] += 1;
        }
        eprintln!(
            "drop-then-write race (kernel wrote into the parked buffer / cancel won): \
             poll-driven read {}/{}, io-wq read {}/{}",
            tally[0][0], tally[0][1], tally[1][0], tally[1][1]
        );
    });
}

/// Dropping a read's future while the read waits in the kernel, with no
/// data ever coming: the buffer stays alive until the cancel's effect (the
/// read's final CQE) arrives, is then dropped exactly once and untouched,
/// `in_flight()` returns to 0, and the read is really gone from the kernel
/// (bytes written afterwards stay in the pipe instead of vanishing into
/// freed memory).
#[test]
fn dropped_op_is_cancelled_and_freed_after_final_cqe() {
    if integration_tests::skip_on_epoll("raw io_uring SQEs (Op::submit) and the kernel holding a dropped op's memory are io_uring's") {
        return;
    }
    run(|| async {
        let (r, w) = pipe();
        let probe = Probe::new(1);
        // SAFETY: `r` is closed at the end, after the op's last CQE.
        let op = unsafe { read_op(r, probe.tracked(0, 32)) };
        runtime::yield_now().await;
        assert_eq!(in_flight(), 1);

        drop(op);
        assert_eq!(probe.drops(0), 0, "freed before the cancel completed");
        assert_eq!(in_flight(), 1, "slot freed before the final CQE");

        turn_until("the cancelled read's buffer is dropped", || {
            probe.total() == 1
        })
        .await;
        assert_eq!(in_flight(), 0);
        assert!(
            probe.contents(0).iter().all(|&b| b == 0),
            "nothing was written, the buffer must be untouched"
        );

        // The cancelled read must no longer be armed in the kernel.
        write_all(w, b"late");
        turns(3).await;
        assert_eq!(read_nonblocking(r), b"late");
        assert_eq!(probe.drops(0), 1, "dropped more than once");
        close(r);
        close(w);
    });
}

/// Dropping an op whose CQE already arrived (but which was never polled)
/// frees its data at once: no cancel, nothing left in flight.
#[test]
fn dropping_completed_unpolled_op_frees_at_once() {
    run(|| async {
        let probe = Probe::new(1);
        let data = probe.tracked(0, 8);
        // SAFETY: a Nop points at no memory.
        let op = unsafe { Op::submit(data, |_| opcode::Nop::new().build()) };
        runtime::yield_now().await;
        assert_eq!(in_flight(), 1, "the completed result waits in its slot");
        assert_eq!(probe.drops(0), 0);
        drop(op);
        assert_eq!(
            probe.drops(0),
            1,
            "the data of a finished op is dropped with its future"
        );
        assert_eq!(in_flight(), 0);
        turns(3).await;
        assert_eq!(probe.drops(0), 1);
    });
}

// ---------------------------------------------------------------------------
// 2. A CQE that arrives before the first poll
// ---------------------------------------------------------------------------

/// A Nop's CQE is submitted and reaped by one runtime tick
/// (`yield_now`) before its `Op` is ever polled; the first poll (manual,
/// no-op waker) must be `Ready` with the result and hand the data back,
/// freeing the slot.
#[test]
fn cqe_before_first_poll_is_ready_on_first_poll() {
    if integration_tests::skip_on_epoll("raw io_uring SQEs (Op::submit) and the kernel holding a dropped op's memory are io_uring's") {
        return;
    }
    run(|| async {
        // SAFETY: a Nop points at no memory; the data is just carried.
        let mut op = unsafe { Op::submit(vec![7u8; 3], |_| opcode::Nop::new().build()) };
        runtime::yield_now().await;
        match poll_once(&mut op) {
            Poll::Ready((completion, data)) => {
                assert_eq!(completion.result().unwrap(), 0);
                assert_eq!(data, vec![7u8; 3]);
            }
            Poll::Pending => {
                panic!("the Nop's CQE was reaped before the first poll, yet it is Pending")
            }
        }
        assert_eq!(in_flight(), 0, "taking the result frees the slot");
    });
}

// ---------------------------------------------------------------------------
// 3. Multishot
// ---------------------------------------------------------------------------

/// A multishot timeout (`IORING_TIMEOUT_MULTISHOT`, 5 repeats of 1 ms,
/// timespec boxed in the op's data) whose stream is not polled while the
/// CQEs arrive: every result is queued, the stream yields exactly 5
/// completions (`-ETIME`; all but the last with `IORING_CQE_F_MORE`), then
/// ends; the slot lives until the last result is handed out and goes with
/// it (`in_flight()` is 0), and the data comes back with `into_inner`.
#[test]
fn multishot_timeout_results_are_queued_and_slot_freed_on_last() {
    if integration_tests::skip_on_epoll("raw io_uring SQEs (Op::submit) and the kernel holding a dropped op's memory are io_uring's") {
        return;
    }
    run(|| async {
        const N: u32 = 5;
        let ts = Box::new(types::Timespec::from(Duration::from_millis(1)));
        // SAFETY: the SQE points only at the boxed timespec, owned by the
        // stream's data until the stream ends.
        let mut stream = unsafe {
            Multishot::submit(ts, |ts| {
                opcode::Timeout::new(&**ts as *const types::Timespec)
                    .count(N)
                    .flags(types::TimeoutFlags::MULTISHOT)
                    .build()
            })
        };
        // Not polling the stream while the timeouts fire (about 5 ms).
        runtime::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(in_flight(), 1);

        let mut got: Vec<Completion> = Vec::new();
        while let Some(c) = stream.next().await {
            got.push(c);
            assert!(
                got.len() <= N as usize,
                "more completions than repeats: {got:?}"
            );
            // The slot stays until the last result was handed out, and goes
            // with it.
            assert_eq!(in_flight(), usize::from(c.has_more()), "{c:?}");
            assert_eq!(stream.is_ended(), !c.has_more());
        }
        assert_eq!(got.len(), N as usize, "{got:?}");
        for (i, c) in got.iter().enumerate() {
            assert_eq!(c.raw_result(), -libc::ETIME, "completion {i}: {c:?}");
            assert_eq!(
                c.has_more(),
                i + 1 < N as usize,
                "completion {i}: F_MORE on all but the last: {c:?}"
            );
        }
        assert!(stream.is_ended());
        assert_eq!(in_flight(), 0, "the slot must be freed after the last CQE");
        assert!(stream.next().await.is_none(), "an ended stream stays ended");
        let ts = stream
            .into_inner()
            .expect("the data comes back once the stream ended");
        drop(ts);
    });
}

/// A listening loopback TCP socket `(fd, port)`, made with libc.
fn tcp_listener() -> (RawFd, u16) {
    // SAFETY: plain socket calls on a descriptor we own, with properly
    // sized address structs.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        addr.sin_port = 0;
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        assert_eq!(
            libc::bind(fd, (&addr as *const libc::sockaddr_in).cast(), len),
            0,
            "bind: {}",
            std::io::Error::last_os_error()
        );
        assert_eq!(libc::listen(fd, 64), 0);
        let mut bound: libc::sockaddr_in = std::mem::zeroed();
        let mut blen = len;
        assert_eq!(
            libc::getsockname(fd, (&mut bound as *mut libc::sockaddr_in).cast(), &mut blen),
            0
        );
        (fd, u16::from_be(bound.sin_port))
    }
}

/// The remote port of a connected IPv4 socket.
fn peer_port(fd: RawFd) -> u16 {
    // SAFETY: getpeername fills a properly sized sockaddr_in.
    unsafe {
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let rc = libc::getpeername(fd, (&mut addr as *mut libc::sockaddr_in).cast(), &mut len);
        assert_eq!(
            rc,
            0,
            "getpeername({fd}): {}",
            std::io::Error::last_os_error()
        );
        u16::from_be(addr.sin_port)
    }
}

/// Whether every byte sent on `fd` was acknowledged by the peer
/// (`tcpi_unacked == 0`).
fn all_acked(fd: RawFd) -> bool {
    // SAFETY: getsockopt fills a properly sized tcp_info.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        );
        assert_eq!(rc, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
        info.tcpi_unacked == 0
    }
}

/// A multishot accept (`AcceptMulti`) on a listening loopback socket; 5
/// clients connect one after another from a std thread (each one waits
/// until the server side has acknowledged a byte it sent, so the server
/// surely queued connection `i` before client `i + 1` connects), while the
/// stream is not polled. The stream then yields the 5 accepted descriptors
/// in connect order (checked with `getpeername` against the clients' local
/// ports), each with `IORING_CQE_F_MORE`; after `cancel()` it ends (the
/// final CQE, without F_MORE, says `ECANCELED`) and `in_flight()` is 0.
#[test]
fn multishot_accept_results_are_queued_in_order() {
    if integration_tests::skip_on_epoll("raw io_uring SQEs (Op::submit) and the kernel holding a dropped op's memory are io_uring's") {
        return;
    }
    run(|| async {
        const K: usize = 5;
        let (lfd, port) = tcp_listener();
        // SAFETY: the SQE names only `lfd`, which stays open until the
        // stream has ended; it points at no memory.
        let mut stream = unsafe {
            Multishot::submit((), |_| {
                opcode::AcceptMulti::new(types::Fd(lfd))
                    .flags(libc::SOCK_CLOEXEC)
                    .build()
            })
        };
        runtime::yield_now().await;

        let clients = std::thread::spawn(move || {
            (0..K)
                .map(|_| {
                    // Returns once the server side has the connection.
                    let s = connect_queued(port);
                    (s.local_addr().unwrap().port(), s)
                })
                .collect::<Vec<_>>()
        });
        // Let the runtime run (accepts complete in the kernel) without
        // polling the stream, until the clients are done.
        let deadline = Instant::now() + WAIT;
        while !clients.is_finished() {
            assert!(
                Instant::now() < deadline,
                "the client thread did not finish"
            );
            runtime::time::sleep(Duration::from_millis(1)).await;
        }
        let clients = clients.join().expect("client thread panicked");
        let ports: Vec<u16> = clients.iter().map(|(p, _)| *p).collect();

        let mut accepted = Vec::new();
        for i in 0..K {
            let c = stream
                .next()
                .await
                .unwrap_or_else(|| panic!("the stream ended after {i} accepts"));
            let fd = c
                .result()
                .unwrap_or_else(|e| panic!("accept {i} failed: {e}")) as RawFd;
            assert!(c.has_more(), "accept {i} must not end the stream: {c:?}");
            accepted.push(fd);
        }
        let peers: Vec<u16> = accepted.iter().map(|&fd| peer_port(fd)).collect();
        assert_eq!(
            peers, ports,
            "accepted connections must come in the order the clients connected"
        );

        stream.cancel();
        let mut tail = Vec::new();
        while let Some(c) = stream.next().await {
            tail.push(c);
            assert!(
                tail.len() < 10,
                "the stream did not end after cancel: {tail:?}"
            );
        }
        let last = tail.last().expect("the final CQE must be delivered");
        assert!(!last.has_more(), "the final CQE has no F_MORE: {last:?}");
        assert_eq!(last.raw_result(), -libc::ECANCELED, "{tail:?}");
        // Nothing connected after the 5 clients: the final CQE is all.
        assert_eq!(
            tail.len(),
            1,
            "unexpected completions after cancel: {tail:?}"
        );
        assert!(stream.is_ended());
        assert_eq!(in_flight(), 0);

        drop(stream);
        for fd in accepted {
            close(fd);
        }
        drop(clients);
        close(lfd);
    });
}

/// The data of a multishot timeout stream: the boxed timespec the SQE
/// points at, and a tracked resource that counts its drop.
struct MultiData {
    ts: Box<types::Timespec>,
    _tracked: Tracked,
}

/// A multishot timeout repeating forever (count 0, every 20 ms), its stream
/// dropped right after its second completion (so the cancel reaches the
/// kernel well within a period): the data is not dropped with the stream
/// (the kernel still owns the timespec), further `F_MORE` CQEs do not free
/// it, it is dropped exactly once after the final CQE of the cancel, and
/// `in_flight()` returns to 0.
#[test]
fn multishot_dropped_midway_keeps_data_until_final_cqe() {
    if integration_tests::skip_on_epoll("raw io_uring SQEs (Op::submit) and the kernel holding a dropped op's memory are io_uring's") {
        return;
    }
    run(|| async {
        let probe = Probe::new(1);
        let data = MultiData {
            ts: Box::new(types::Timespec::from(Duration::from_millis(20))),
            _tracked: probe.tracked(0, 1),
        };
        // SAFETY: the SQE points only at the boxed timespec, owned by the
        // stream's data until its last CQE.
        let mut stream = unsafe {
            Multishot::submit(data, |d| {
                opcode::Timeout::new(&*d.ts as *const types::Timespec)
                    .count(0)
                    .flags(types::TimeoutFlags::MULTISHOT)
                    .build()
            })
        };
        for i in 0..2 {
            let c = stream.next().await.expect("an endless stream");
            assert_eq!(c.raw_result(), -libc::ETIME, "completion {i}: {c:?}");
            assert!(c.has_more(), "completion {i}: {c:?}");
        }
        drop(stream);
        assert_eq!(probe.drops(0), 0, "the data was freed with the stream");
        assert_eq!(in_flight(), 1, "the slot must live until the final CQE");
        turn_until("the dropped stream's data is dropped", || {
            probe.total() == 1
        })
        .await;
        assert_eq!(in_flight(), 0);
        // Several more timer periods: nothing fires into a freed slot.
        runtime::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(in_flight(), 0);
        assert_eq!(probe.drops(0), 1, "dropped more than once");
    });
}

/// A multishot timeout repeating forever (count 0, every 1 ms), dropped
/// while one of its shots is pending: the thread blocks for a few periods
/// right before the drop (not to wait for anything, but to make sure the
/// timer has fired and its completion work is queued, the moment the
/// kernel keeps the timeout out of its timeout list until the completion
/// re-arms it). The drop's cancel then reaches the kernel in that window.
/// Whatever the kernel answers, the stream must still end: the data is
/// dropped exactly once within the bounded wait and `in_flight()` returns
/// to 0 (a runtime that cancels only once leaves the timeout firing forever
/// and the data parked until the runtime is dropped).
#[test]
fn multishot_dropped_between_shots_is_still_cancelled() {
    if integration_tests::skip_on_epoll("raw io_uring SQEs (Op::submit) and the kernel holding a dropped op's memory are io_uring's") {
        return;
    }
    run(|| async {
        for round in 0..5 {
            let probe = Probe::new(1);
            let data = MultiData {
                ts: Box::new(types::Timespec::from(Duration::from_millis(1))),
                _tracked: probe.tracked(0, 1),
            };
            // SAFETY: the SQE points only at the boxed timespec, owned by
            // the stream's data until its last CQE.
            let mut stream = unsafe {
                Multishot::submit(data, |d| {
                    opcode::Timeout::new(&*d.ts as *const types::Timespec)
                        .count(0)
                        .flags(types::TimeoutFlags::MULTISHOT)
                        .build()
                })
            };
            let c = stream.next().await.expect("an endless stream");
            assert!(c.has_more(), "{c:?}");
            // Let the timer fire (a few times over) without running the
            // ring: its shot's completion work is now pending.
            std::thread::sleep(Duration::from_millis(5));
            drop(stream);
            assert_eq!(probe.drops(0), 0, "the data was freed with the stream");
            turn_until(
                &format!("round {round}: the dropped multishot timeout's data is dropped"),
                || probe.total() == 1,
            )
            .await;
            assert_eq!(in_flight(), 0);
        }
    });
}

/// Like [`multishot_dropped_between_shots_is_still_cancelled`], with an
/// explicit [`Multishot::cancel`] instead of a drop: the cancel reaches the
/// kernel while a shot's completion is pending; the stream must still end
/// (within a bounded number of further completions, the last one without
/// `F_MORE`), and `in_flight()` returns to 0.
#[test]
fn multishot_cancel_between_shots_ends_the_stream() {
    if integration_tests::skip_on_epoll("raw io_uring SQEs (Op::submit) and the kernel holding a dropped op's memory are io_uring's") {
        return;
    }
    run(|| async {
        for round in 0..5 {
            // SAFETY: the SQE points only at the boxed timespec, owned by
            // the stream's data until it ended.
            let mut stream = unsafe {
                Multishot::submit(
                    Box::new(types::Timespec::from(Duration::from_millis(1))),
                    |ts| {
                        opcode::Timeout::new(&**ts as *const types::Timespec)
                            .count(0)
                            .flags(types::TimeoutFlags::MULTISHOT)
                            .build()
                    },
                )
            };
            let c = stream.next().await.expect("an endless stream");
            assert!(c.has_more(), "{c:?}");
            // As above: a shot's completion work is pending when the
            // cancel reaches the kernel.
            std::thread::sleep(Duration::from_millis(5));
            stream.cancel();
            let deadline = Instant::now() + WAIT;
            let mut after = 0usize;
            while let Some(c) = stream.next().await {
                after += 1;
                assert!(
                    Instant::now() < deadline,
                    "round {round}: the stream did not end within {WAIT:?} of cancel(); \
                     {after} completions since, the last {c:?}"
                );
            }
            assert!(stream.is_ended());
            assert_eq!(in_flight(), 0);
        }
    });
}

// ---------------------------------------------------------------------------
// 4. The runtime dropped with ops in flight
// ---------------------------------------------------------------------------

const HELD: usize = 200;
const PIPES: usize = 10;

/// Asserts that each of the `n` resources of `probe` was dropped exactly
/// once.
fn assert_each_dropped_once(probe: &Probe, n: usize) {
    let wrong: Vec<(usize, usize)> = (0..n)
        .map(|i| (i, probe.drops(i)))
        .filter(|&(_, d)| d != 1)
        .collect();
    assert!(
        wrong.is_empty(),
        "resources not dropped exactly once (index, drops): {wrong:?}"
    );
}

/// 200 reads on 10 empty pipes, each awaited by a spawned task that never
/// completes; `block_on` returns while the tasks (and so the ops) are
/// alive, then the runtime is dropped: when `drop` returns, every one of
/// the 200 buffers has been dropped exactly once (cancelled and released,
/// not leaked, not freed twice).
#[test]
fn runtime_dropped_with_ops_held_by_tasks_drops_each_resource_once() {
    if integration_tests::skip_on_epoll("raw io_uring SQEs (Op::submit) and the kernel holding a dropped op's memory are io_uring's") {
        return;
    }
    with_deadline(LIMIT, || {
        let probe = Probe::new(HELD);
        let pipes: Vec<(RawFd, RawFd)> = (0..PIPES).map(|_| pipe()).collect();
        let rt = Runtime::new().unwrap();
        let p = probe.clone();
        let fds = pipes.clone();
        rt.block_on(async move {
            let started = Rc::new(Cell::new(0usize));
            for i in 0..HELD {
                let data = p.tracked(i, 16);
                let fd = fds[i % PIPES].0;
                let started = started.clone();
                drop(runtime::spawn(async move {
                    // SAFETY: the pipes are closed only after the runtime
                    // was dropped, i.e. after every op's last CQE.
                    let op = unsafe { read_op(fd, data) };
                    started.set(started.get() + 1);
                    let _ = op.await;
                    unreachable!("nothing is ever written to the pipes");
                }));
            }
            turn_until("every task submitted its read", || started.get() == HELD).await;
            turns(2).await;
            assert_eq!(in_flight(), HELD);
            assert_eq!(p.total(), 0);
        });
        assert_eq!(probe.total(), 0, "resources dropped while their tasks live");
        drop(rt);
        assert_each_dropped_once(&probe, HELD);
        for (r, w) in pipes {
            close(r);
            close(w);
        }
    });
}

/// 200 reads on 10 empty pipes whose `Op` futures are dropped inside
/// `block_on` (parked in the driver, cancels queued but not yet submitted)
/// right before it returns; then the runtime is dropped: none was freed
/// early, and when `drop` returns each buffer was dropped exactly once.
#[test]
fn runtime_dropped_with_ignored_ops_parked_drops_each_resource_once() {
    if integration_tests::skip_on_epoll("raw io_uring SQEs (Op::submit) and the kernel holding a dropped op's memory are io_uring's") {
        return;
    }
    with_deadline(LIMIT, || {
        let probe = Probe::new(HELD);
        let pipes: Vec<(RawFd, RawFd)> = (0..PIPES).map(|_| pipe()).collect();
        let rt = Runtime::new().unwrap();
        let p = probe.clone();
        let fds = pipes.clone();
        rt.block_on(async move {
            let ops: Vec<Op<Tracked>> = (0..HELD)
                // SAFETY: the pipes are closed only after the runtime was
                // dropped, i.e. after every op's last CQE.
                .map(|i| unsafe { read_op(fds[i % PIPES].0, p.tracked(i, 16)) })
                .collect();
            // The reads go to the kernel and wait there.
            turns(2).await;
            assert_eq!(in_flight(), HELD);
            drop(ops);
            assert_eq!(p.total(), 0, "parked resources freed before their CQEs");
            assert_eq!(in_flight(), HELD, "ignored ops must keep their slots");
        });
        assert_eq!(
            probe.total(),
            0,
            "resources freed before the runtime shut down"
        );
        drop(rt);
        assert_each_dropped_once(&probe, HELD);
        for (r, w) in pipes {
            close(r);
            close(w);
        }
    });
}

/// The token written into pipe `k` by the io-wq tests.
fn token(k: usize) -> Vec<u8> {
    format!("token{k:03}").into_bytes()
}

/// Checks, after the runtime was dropped, that each pipe's token is either
/// in exactly one dropped buffer or still in the pipe; closes the pipes.
fn assert_tokens_conserved(probe: &Probe, pipes: &[(RawFd, RawFd)], what: &str) {
    assert_each_dropped_once(probe, HELD);
    let mut landed = 0;
    for (k, &(r, w)) in pipes.iter().enumerate() {
        let token = token(k);
        let in_buffers = (0..HELD)
            .filter(|i| i % PIPES == k)
            .filter(|&i| probe.contents(i).starts_with(&token))
            .count();
        let in_pipe = read_nonblocking(r);
        assert!(
            in_pipe.is_empty() || in_pipe == token,
            "pipe {k} holds {in_pipe:?}"
        );
        assert_eq!(
            in_buffers + usize::from(!in_pipe.is_empty()),
            1,
            "token of pipe {k}: in {in_buffers} buffers, in pipe: {} (a token in no buffer \
             and not in the pipe went into freed memory)",
            !in_pipe.is_empty()
        );
        landed += in_buffers;
        close(r);
        close(w);
    }
    eprintln!("{what}: {landed} of {PIPES} tokens were read into parked buffers");
}

/// 200 reads run by io-wq workers (`IOSQE_ASYNC`, blocking reads on 10
/// empty pipes, 20 per pipe), held by spawned tasks; after `block_on`
/// returned, one 8-byte token is written into each pipe, so workers copy
/// it into a buffer whose future is about to be dropped with the runtime.
/// When `drop` returns, each buffer was dropped exactly once, and no token
/// was lost: each is either in exactly one dropped buffer (the kernel wrote
/// into memory the runtime kept alive) or still in its pipe.
#[test]
fn runtime_dropped_while_io_wq_reads_receive_data_loses_nothing() {
    if integration_tests::skip_on_epoll("raw io_uring SQEs (Op::submit) and the kernel holding a dropped op's memory are io_uring's") {
        return;
    }
    with_deadline(LIMIT, || {
        let probe = Probe::new(HELD);
        let pipes: Vec<(RawFd, RawFd)> = (0..PIPES).map(|_| pipe()).collect();
        let rt = Runtime::new().unwrap();
        let p = probe.clone();
        let fds = pipes.clone();
        rt.block_on(async move {
            let started = Rc::new(Cell::new(0usize));
            for i in 0..HELD {
                let data = p.tracked(i, 16);
                let fd = fds[i % PIPES].0;
                let started = started.clone();
                drop(runtime::spawn(async move {
                    // SAFETY: the pipes are closed only after the runtime
                    // was dropped, i.e. after every op's last CQE.
                    let op = unsafe { read_op_flags(fd, data, squeue::Flags::ASYNC) };
                    started.set(started.get() + 1);
                    let _ = op.await;
                    unreachable!("nothing is written while the runtime runs");
                }));
            }
            turn_until("every task submitted its read", || started.get() == HELD).await;
            turns(2).await;
            assert_eq!(in_flight(), HELD);
        });
        for (k, &(_, w)) in pipes.iter().enumerate() {
            write_all(w, &token(k));
        }
        drop(rt);
        assert_tokens_conserved(&probe, &pipes, "io-wq reads held by tasks");
    });
}

/// 200 io-wq reads (`IOSQE_ASYNC`) on 10 empty pipes whose `Op` futures
/// are dropped inside `block_on`; right after (before the runtime turns,
/// so before any cancel reached the kernel) a token is written into each
/// pipe, which the workers copy into the parked buffers; then `block_on`
/// returns and the runtime is dropped. No buffer was freed with its future,
/// each is dropped exactly once, and no token went into freed memory.
#[test]
fn io_wq_reads_write_into_parked_buffers_then_runtime_dropped() {
    if integration_tests::skip_on_epoll("raw io_uring SQEs (Op::submit) and the kernel holding a dropped op's memory are io_uring's") {
        return;
    }
    with_deadline(LIMIT, || {
        let probe = Probe::new(HELD);
        let pipes: Vec<(RawFd, RawFd)> = (0..PIPES).map(|_| pipe()).collect();
        let rt = Runtime::new().unwrap();
        let p = probe.clone();
        let fds = pipes.clone();
        rt.block_on(async move {
            let ops: Vec<Op<Tracked>> = (0..HELD)
                // SAFETY: the pipes are closed only after the runtime was
                // dropped, i.e. after every op's last CQE.
                .map(|i| unsafe {
                    read_op_flags(fds[i % PIPES].0, p.tracked(i, 16), squeue::Flags::ASYNC)
                })
                .collect();
            turns(2).await;
            assert_eq!(in_flight(), HELD);
            drop(ops);
            for (k, &(_, w)) in fds.iter().enumerate() {
                write_all(w, &token(k));
            }
            assert_eq!(p.total(), 0, "parked resources freed before their CQEs");
            assert_eq!(in_flight(), HELD, "ignored ops must keep their slots");
        });
        drop(rt);
        assert_tokens_conserved(&probe, &pipes, "io-wq reads parked");
    });
}

// ---------------------------------------------------------------------------
// 5. A tiny ring driving many operations
// ---------------------------------------------------------------------------

const MANY: usize = 20_000;

/// Spawns `MANY` tasks, each awaiting the op `make(i)` and reporting its
/// raw result; lets the runtime run until all finished, sampling
/// `in_flight()` between ticks; returns the results and the peak.
async fn run_many<T: 'static>(make: impl Fn(usize) -> Op<T>) -> (Vec<i32>, usize) {
    let results = Rc::new(std::cell::RefCell::new(vec![i32::MIN; MANY]));
    let done = Rc::new(Cell::new(0usize));
    for i in 0..MANY {
        let op = make(i);
        let results = results.clone();
        let done = done.clone();
        drop(runtime::spawn(async move {
            let (c, _data) = op.await;
            results.borrow_mut()[i] = c.raw_result();
            done.set(done.get() + 1);
        }));
    }
    let mut peak = in_flight();
    let deadline = Instant::now() + Duration::from_secs(20);
    while done.get() < MANY {
        assert!(
            Instant::now() < deadline,
            "only {} of {MANY} ops completed (in_flight = {})",
            done.get(),
            in_flight()
        );
        runtime::yield_now().await;
        peak = peak.max(in_flight());
    }
    let results = std::mem::take(&mut *results.borrow_mut());
    (results, peak)
}

/// A ring of 8 SQ entries (32 CQ entries) with 20,000 timeouts of 5-20 ms
/// in flight together (each timespec boxed in its op's data): the full
/// submission queue is flushed and retried, the overflowing completion
/// queue loses nothing, every timeout completes with `ETIME`, and
/// `in_flight()` is 0 at the end.
#[test]
fn ring_of_8_entries_drives_20000_concurrent_timeouts() {
    if integration_tests::skip_on_epoll("raw io_uring SQEs (Op::submit) and the kernel holding a dropped op's memory are io_uring's") {
        return;
    }
    with_deadline(LIMIT, || {
        let rt = Runtime::builder().entries(8).build().unwrap();
        rt.block_on(async {
            let (results, peak) =
                run_many(|i| timeout_op(Duration::from_millis(5 + (i % 16) as u64))).await;
            let bad: Vec<(usize, i32)> = results
                .iter()
                .copied()
                .enumerate()
                .filter(|&(_, r)| r != -libc::ETIME)
                .take(10)
                .collect();
            assert!(
                bad.is_empty(),
                "timeouts not ending with ETIME (index, res): {bad:?}"
            );
            assert_eq!(in_flight(), 0);
            eprintln!("20,000 timeouts on an 8-entry ring: peak in_flight {peak}");
            // All were submitted at once from this future; the slab tracks
            // far more ops than the ring has entries.
            assert_eq!(
                peak, MANY,
                "all ops are tracked at once right after submission"
            );
        });
    });
}

/// A ring of 8 SQ entries with 20,000 Nops submitted at once: every one
/// completes with 0, nothing is lost in the overflowing completion queue,
/// and `in_flight()` is 0 at the end.
#[test]
fn ring_of_8_entries_drives_20000_nops() {
    if integration_tests::skip_on_epoll("raw io_uring SQEs (Op::submit) and the kernel holding a dropped op's memory are io_uring's") {
        return;
    }
    with_deadline(LIMIT, || {
        let rt = Runtime::builder().entries(8).build().unwrap();
        rt.block_on(async {
            // SAFETY: a Nop points at no memory.
            let (results, _) =
                run_many(|_| unsafe { Op::submit((), |_| opcode::Nop::new().build()) }).await;
            let bad: Vec<(usize, i32)> = results
                .iter()
                .copied()
                .enumerate()
                .filter(|&(_, r)| r != 0)
                .take(10)
                .collect();
            assert!(
                bad.is_empty(),
                "Nops not completing with 0 (index, res): {bad:?}"
            );
            assert_eq!(in_flight(), 0);
        });
    });
}

/// 20,000 spawned tasks on an 8-entry ring, each submitting its own timeout
/// (5-20 ms) when it first runs: the tasks' submissions overlap (the peak
/// of `in_flight()` exceeds the ring size, since a slot is only freed when
/// its task polls again), every timeout ends with `ETIME`, nothing leaks.
#[test]
fn ring_of_8_entries_drives_20000_timeouts_submitted_by_tasks() {
    if integration_tests::skip_on_epoll("raw io_uring SQEs (Op::submit) and the kernel holding a dropped op's memory are io_uring's") {
        return;
    }
    with_deadline(LIMIT, || {
        let rt = Runtime::builder().entries(8).build().unwrap();
        rt.block_on(async {
            let results = Rc::new(std::cell::RefCell::new(vec![i32::MIN; MANY]));
            let done = Rc::new(Cell::new(0usize));
            for i in 0..MANY {
                let results = results.clone();
                let done = done.clone();
                drop(runtime::spawn(async move {
                    let op = timeout_op(Duration::from_millis(5 + (i % 16) as u64));
                    let (c, _ts) = op.await;
                    results.borrow_mut()[i] = c.raw_result();
                    done.set(done.get() + 1);
                }));
            }
            let mut peak = 0;
            let deadline = Instant::now() + Duration::from_secs(20);
            while done.get() < MANY {
                assert!(
                    Instant::now() < deadline,
                    "only {} of {MANY} timeouts completed (in_flight = {})",
                    done.get(),
                    in_flight()
                );
                runtime::yield_now().await;
                peak = peak.max(in_flight());
            }
            let bad: Vec<(usize, i32)> = results
                .borrow()
                .iter()
                .copied()
                .enumerate()
                .filter(|&(_, r)| r != -libc::ETIME)
                .take(10)
                .collect();
            assert!(
                bad.is_empty(),
                "timeouts not ending with ETIME (index, res): {bad:?}"
            );
            assert_eq!(in_flight(), 0);
            eprintln!("20,000 task-submitted timeouts on an 8-entry ring: peak in_flight {peak}");
            // A tick runs up to 128 tasks (the default event interval), each
            // submitting one op whose slot stays until that task runs again:
            // right after the first tick at least 128 ops are tracked.
            assert!(
                peak >= 128,
                "peak in_flight {peak}: ops were not in flight together"
            );
        });
    });
}

// ---------------------------------------------------------------------------
// 6. Aborting a task with an op in flight
// ---------------------------------------------------------------------------

/// A spawned task awaits a read on an empty pipe; aborting it drops its
/// future (and so the `Op`) at the runtime's next turn: awaiting the handle
/// gives a cancelled `JoinError`, the buffer is not freed by `abort()`
/// itself, and it is dropped exactly once, after the read's final CQE;
/// the read is gone from the kernel afterwards.
#[test]
fn aborting_task_drops_its_in_flight_op_after_cqe() {
    if integration_tests::skip_on_epoll("raw io_uring SQEs (Op::submit) and the kernel holding a dropped op's memory are io_uring's") {
        return;
    }
    run(|| async {
        let (r, w) = pipe();
        let probe = Probe::new(1);
        let data = probe.tracked(0, 16);
        let handle = runtime::spawn(async move {
            // SAFETY: `r` is closed at the end, after the op's last CQE.
            let op = unsafe { read_op(r, data) };
            op.await.0.raw_result()
        });
        turn_until("the task's read is in flight", || in_flight() == 1).await;
        turns(2).await;
        assert!(!handle.is_finished());
        assert_eq!(in_flight(), 1);

        handle.abort();
        assert_eq!(
            probe.drops(0),
            0,
            "abort() must not free the op's data itself"
        );
        let err = handle.await.expect_err("an aborted task has no output");
        assert!(
            err.is_cancelled(),
            "expected a cancelled JoinError, got {err:?}"
        );

        turn_until("the aborted task's buffer is dropped", || {
            probe.total() == 1
        })
        .await;
        assert_eq!(in_flight(), 0);
        assert!(probe.contents(0).iter().all(|&b| b == 0));

        write_all(w, b"after");
        turns(3).await;
        assert_eq!(
            read_nonblocking(r),
            b"after",
            "the aborted read is still armed"
        );
        assert_eq!(probe.drops(0), 1);
        close(r);
        close(w);
    });
}

/// Like [`aborting_task_drops_its_in_flight_op_after_cqe`], but with the
/// kernel writing after the task is gone: right after `abort()`, a writer
/// task is spawned, which the run queue (FIFO) polls right after the
/// aborted task's future was dropped and before the runtime's next
/// `io_uring_enter` submits the cancel; it writes bytes into the pipe. Half
/// of the rounds run the read on an io-wq worker (`IOSQE_ASYNC`), which
/// then usually copies the bytes into the parked buffer. Each round: the
/// buffer is not freed when the future goes, it is dropped exactly once,
/// and the bytes are either in it or still in the pipe (never lost into
/// freed memory).
#[test]
fn aborting_task_while_kernel_writes_keeps_buffer_alive() {
    if integration_tests::skip_on_epoll("raw io_uring SQEs (Op::submit) and the kernel holding a dropped op's memory are io_uring's") {
        return;
    }
    run(|| async {
        let mut tally = [[0usize; 2]; 2];
        for round in 0..100u8 {
            let io_wq = round % 2 == 1;
            let flags = if io_wq {
                squeue::Flags::ASYNC
            } else {
                squeue::Flags::empty()
            };
            let (r, w) = pipe();
            let probe = Probe::new(1);
            let data = probe.tracked(0, 16);
            let handle = runtime::spawn(async move {
                // SAFETY: `r` is closed at the end, after the op's last CQE.
                let op = unsafe { read_op_flags(r, data, flags) };
                op.await.0.raw_result()
            });
            turn_until("the task's read is in flight", || in_flight() == 1).await;
            turns(1).await;
            handle.abort();
            let payload = [b'a', b'b', round];
            let p = probe.clone();
            let writer = runtime::spawn(async move {
                // The aborted task ran just before: its future is gone.
                assert_eq!(in_flight(), 1, "the aborted op's slot must be kept");
                assert_eq!(p.drops(0), 0, "buffer freed with the aborted task's future");
                write_all(w, &payload);
            });
            let err = handle.await.expect_err("aborted");
            assert!(
                err.is_cancelled(),
                "expected a cancelled JoinError, got {err:?}"
            );
            writer.await.expect("the writer task failed");
            turn_until("the aborted task's buffer is dropped", || {
                probe.total() == 1
            })
            .await;
            assert_eq!(in_flight(), 0);
            let buf = probe.contents(0);
            let in_pipe = read_nonblocking(r);
            let wrote = buf.starts_with(&payload);
            if wrote {
                assert!(in_pipe.is_empty(), "bytes both read and in the pipe");
            } else {
                assert!(buf.iter().all(|&b| b == 0), "{buf:?}");
                assert_eq!(
                    in_pipe, payload,
                    "bytes neither in the buffer nor in the pipe"
                );
            }
            tally[io_wq as usize][(!wrote) as usize] += 1;
            assert_eq!(probe.drops(0), 1);
            close(r);
            close(w);
        }
        eprintln!(
            "abort-then-write race (kernel wrote into the parked buffer / cancel won): \
             poll-driven read {}/{}, io-wq read {}/{}",
            tally[0][0], tally[0][1], tally[1][0], tally[1][1]
        );
    });
}

// ---------------------------------------------------------------------------
// 7. Descriptors created by an op whose future is gone (DESIGN.md, op
//    lifecycle invariant 5)
// ---------------------------------------------------------------------------

/// Connects a client to `port` and returns once the server side surely has
/// the connection queued for accept (the client sent one byte and the
/// server's kernel acknowledged it).
fn connect_queued(port: u16) -> std::net::TcpStream {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"x").unwrap();
    let deadline = Instant::now() + WAIT;
    while !all_acked(s.as_raw_fd()) {
        assert!(Instant::now() < deadline, "the byte was never acknowledged");
        std::thread::sleep(Duration::from_micros(200));
    }
    s
}

/// Whether the server side of `client`'s connection was closed: the client
/// sees end of file or a reset (the server closed with our byte unread).
fn peer_closed(client: &std::net::TcpStream) -> bool {
    let mut pfd = libc::pollfd {
        fd: client.as_raw_fd(),
        events: libc::POLLIN | libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: polls one live pollfd, without waiting.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    assert!(n >= 0, "poll: {}", std::io::Error::last_os_error());
    if n == 0 {
        return false;
    }
    let mut b = [0u8; 1];
    // SAFETY: reads into a live one-byte buffer, without blocking.
    let r = unsafe { libc::recv(pfd.fd, b.as_mut_ptr().cast(), 1, libc::MSG_DONTWAIT) };
    let err = std::io::Error::last_os_error();
    r == 0 || (r < 0 && err.raw_os_error() == Some(libc::ECONNRESET))
}

/// A single-shot accept `Op` dropped before the runtime turns, on a
/// listener that already has a connection queued: the accept (submitted
/// before its cancel) creates a descriptor after its future is gone, and
/// nobody can ever take it, so the runtime must close it (DESIGN.md
/// invariant 5). Once the op is over and the listener is closed (which
/// resets a connection still queued, should the cancel have won), the
/// client must see its connection closed; a leaked descriptor keeps it open
/// forever. (The op's data cannot do it: the descriptor is only in the CQE,
/// which the runtime does not hand to the data of a dropped op.)
#[test]
fn dropped_accept_op_does_not_leak_the_late_descriptor() {
    run(|| async {
        let (lfd, port) = tcp_listener();
        let client = connect_queued(port);
        // SAFETY: the SQE names `lfd`, closed only after the op is over,
        // and points at no memory (no peer address requested).
        let op = unsafe {
            Op::submit((), |_| {
                opcode::Accept::new(types::Fd(lfd), std::ptr::null_mut(), std::ptr::null_mut())
                    .flags(libc::SOCK_CLOEXEC)
                    .build()
            })
        };
        drop(op);
        turn_until("the dropped accept is over", || in_flight() == 0).await;
        close(lfd);
        turn_until(
            "the client sees its connection closed (the late-accepted descriptor must not leak)",
            || peer_closed(&client),
        )
        .await;
    });
}

/// A multishot accept stream that is never polled: a client connects, the
/// accept's completion (a new descriptor) is queued or still on its way,
/// and the stream is dropped. The descriptor can never be handed to anyone,
/// so the runtime must close it (DESIGN.md invariant 5): once the stream is
/// over and the listener is closed, the client must see its connection
/// closed.
#[test]
fn dropped_multishot_accept_does_not_leak_queued_descriptors() {
    run(|| async {
        let (lfd, port) = tcp_listener();
        // SAFETY: the SQE names `lfd`, closed only after the stream is
        // over, and points at no memory.
        let stream = unsafe {
            Multishot::submit((), |_| {
                opcode::AcceptMulti::new(types::Fd(lfd))
                    .flags(libc::SOCK_CLOEXEC)
                    .build()
            })
        };
        runtime::yield_now().await;
        let client = connect_queued(port);
        // Turns without polling the stream: the accept's CQE gets queued.
        turns(5).await;
        drop(stream);
        turn_until("the dropped multishot accept is over", || in_flight() == 0).await;
        close(lfd);
        turn_until(
            "the client sees its connection closed (the queued accepted descriptor must not leak)",
            || peer_closed(&client),
        )
        .await;
    });
}
