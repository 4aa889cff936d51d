//! Use-after-free detection where the kernel writes (`DESIGN.md`, the op
//! lifecycle invariants 1, 3 and 4).
//!
//! AddressSanitizer sees user-space accesses only: if the runtime freed a
//! buffer while a read was still in flight, the kernel would copy the late
//! data into freed (possibly reused) memory and nobody would notice. This
//! file installs a test-only `#[global_allocator]` that makes such writes
//! visible:
//!
//! - every `dealloc` fills the block with [`PATTERN`] and parks it in a
//!   quarantine (a fixed ring of at most [`SLOTS`] blocks and
//!   [`BUDGET`] bytes, in a static array: the allocator never allocates
//!   itself) instead of returning it to the system allocator;
//! - when a block leaves the quarantine (evicted by newer ones, or by
//!   [`flush_quarantine`]), and for every block at [`check_quarantine`], the
//!   pattern is verified; a changed byte means something wrote into freed
//!   memory. The block's address, size and first changed byte are recorded
//!   in statics, and the test fails at its next check with that report.
//!
//! The first test proves the detector sees kernel writes by deliberately
//! breaking the op contract; the others run the cancellation, timeout and
//! runtime-drop scenarios and require zero corrupted blocks afterwards.
//!
//! Every scenario runs on a default runtime and on an `SQPOLL` one. With
//! the default setup (`IORING_SETUP_DEFER_TASKRUN`) the kernel finishes a
//! read of a pollable file (socket, pipe, FIFO) only inside the runtime
//! thread's `io_uring_enter`, after the cancel of that batch has marked it
//! cancelled, so an abandoned read there cannot write late; with `SQPOLL`
//! the kernel's own thread finishes it at any moment. Note that on recent
//! kernels `IOSQE_ASYNC` reads of pollable files do not block an io-wq
//! worker either: the worker tries once without blocking and then arms a
//! poll like any other read. Where the kernel really does write late is the
//! runtime-drop scenarios: a runtime that freed parked buffers as soon as
//! their future was dropped (tried on a scratch copy of the runtime) fails
//! `runtime_dropped_mid_transfer` (SQPOLL) and
//! `runtime_dropped_with_pipe_reads_while_peer_writes` (default) here.
//!
//! The allocator is process-wide, so the tests of this file run one at a
//! time (a static mutex). ASan builds work unchanged: the quarantined
//! blocks are still allocated as far as ASan knows.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, UnsafeCell};
use std::ffi::CString;
use std::fs::OpenOptions;
use std::future::Future;
use std::io::Write;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::task::Poll;
use std::time::Duration;

use integration_tests::with_deadline;
use runtime::io::OwnedRead;
use runtime::op::io_uring::{opcode, squeue, types};
use runtime::op::{Op, SharedFd};
use runtime::Runtime;

// ---------------------------------------------------------------------------
// The quarantine allocator
// ---------------------------------------------------------------------------

/// The byte every freed block is filled with.
const PATTERN: u8 = 0xDB;
/// [`PATTERN`] in every byte of a word.
const PATTERN_WORD: u64 = u64::from_ne_bytes([PATTERN; 8]);
/// Most blocks held in quarantine at once.
const SLOTS: usize = 1 << 18;
/// Most bytes held in quarantine at once (a single bigger block is still
/// held, alone).
const BUDGET: usize = 256 << 20;
/// How many corrupted blocks are remembered for the report.
const REPORTS: usize = 16;

/// A freed block waiting in quarantine.
#[derive(Clone, Copy)]
struct Block {
    ptr: *mut u8,
    size: usize,
    align: usize,
    /// Its corruption was already recorded (count it once).
    reported: bool,
}

impl Block {
    const EMPTY: Block = Block {
        ptr: std::ptr::null_mut(),
        size: 0,
        align: 1,
        reported: false,
    };
}

/// A block found corrupted: where, how big, and the first changed byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Corruption {
    addr: usize,
    size: usize,
    offset: usize,
    byte: u8,
}

/// The quarantine's state, only touched with [`Quarantine::lock`] held.
struct Ring {
    blocks: [Block; SLOTS],
    /// Index of the oldest block.
    head: usize,
    /// Blocks held.
    len: usize,
    /// Bytes held.
    bytes: usize,
    /// Corrupted blocks found so far (each counted once).
    corrupted: usize,
    /// The first [`REPORTS`] of them.
    reports: [Option<Corruption>; REPORTS],
}

/// The ring behind a spin lock: locking neither allocates nor recurses.
struct Quarantine {
    lock: AtomicBool,
    ring: UnsafeCell<Ring>,
}

// SAFETY: `ring` is only accessed while `lock` is held (see `with`).
unsafe impl Sync for Quarantine {}

static QUARANTINE: Quarantine = Quarantine {
    lock: AtomicBool::new(false),
    ring: UnsafeCell::new(Ring {
        blocks: [Block::EMPTY; SLOTS],
        head: 0,
        len: 0,
        bytes: 0,
        corrupted: 0,
        reports: [None; REPORTS],
    }),
};

impl Quarantine {
    /// Runs `f` with the lock held. `f` must not allocate or free (that
    /// would deadlock on the lock) and must not panic.
    fn with<R>(&self, f: impl FnOnce(&mut Ring) -> R) -> R {
        let mut spins = 0u32;
        while self
            .lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins = spins.wrapping_add(1);
            if spins % 64 == 0 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        // SAFETY: the lock is held, so this is the only reference to the
        // ring until it is released below.
        let r = f(unsafe { &mut *self.ring.get() });
        self.lock.store(false, Ordering::Release);
        r
    }
}

/// The first byte of the block that no longer holds [`PATTERN`], if any.
///
/// # Safety
///
/// `ptr..ptr + size` must be a quarantined block (allocated from the system
/// allocator's point of view, so readable).
unsafe fn first_changed(ptr: *const u8, size: usize) -> Option<(usize, u8)> {
    // Volatile reads: the memory may be written concurrently by the kernel
    // (that is exactly what is being looked for).
    let head = ptr.align_offset(8).min(size);
    let words = (size - head) / 8;
    let byte_at = |i: usize| {
        // SAFETY: i < size, inside the block.
        unsafe { ptr.add(i).read_volatile() }
    };
    for i in 0..head {
        if byte_at(i) != PATTERN {
            return Some((i, byte_at(i)));
        }
    }
    for w in 0..words {
        // SAFETY: an 8-aligned word inside the block.
        let word = unsafe { ptr.add(head + 8 * w).cast::<u64>().read_volatile() };
        if word != PATTERN_WORD {
            for i in head + 8 * w..head + 8 * w + 8 {
                if byte_at(i) != PATTERN {
                    return Some((i, byte_at(i)));
                }
            }
        }
    }
    for i in head + 8 * words..size {
        if byte_at(i) != PATTERN {
            return Some((i, byte_at(i)));
        }
    }
    None
}

impl Ring {
    /// Checks one block's pattern, recording a new corruption; whether the
    /// block is corrupted.
    fn verify(&mut self, index: usize) -> bool {
        let block = self.blocks[index % SLOTS];
        // SAFETY: every block in the ring is quarantined.
        let Some((offset, byte)) = (unsafe { first_changed(block.ptr, block.size) }) else {
            return false;
        };
        if !block.reported {
            self.blocks[index % SLOTS].reported = true;
            if let Some(free) = self.reports.iter_mut().find(|r| r.is_none()) {
                *free = Some(Corruption {
                    addr: block.ptr as usize,
                    size: block.size,
                    offset,
                    byte,
                });
            }
            self.corrupted += 1;
        }
        true
    }

    /// Verifies the oldest block and gives it back to the system allocator;
    /// whether it was corrupted.
    fn evict_oldest(&mut self) -> bool {
        debug_assert!(self.len > 0);
        let corrupted = self.verify(self.head);
        let block = std::mem::replace(&mut self.blocks[self.head], Block::EMPTY);
        self.head = (self.head + 1) % SLOTS;
        self.len -= 1;
        self.bytes -= block.size;
        // SAFETY: the block came from `System` with exactly this layout
        // (`QuarantineAlloc` forwards allocations unchanged).
        unsafe {
            System.dealloc(
                block.ptr,
                Layout::from_size_align_unchecked(block.size, block.align),
            )
        };
        corrupted
    }

    /// Parks a freed block, evicting the oldest ones to make room.
    fn push(&mut self, block: Block) {
        while self.len > 0 && (self.len == SLOTS || self.bytes + block.size > BUDGET) {
            self.evict_oldest();
        }
        self.blocks[(self.head + self.len) % SLOTS] = block;
        self.len += 1;
        self.bytes += block.size;
    }
}

/// The system allocator with a quarantine for freed blocks.
struct QuarantineAlloc;

// SAFETY: allocation is forwarded to `System` unchanged; a freed block is
// only handed back to `System` (with its original layout) when it leaves the
// quarantine, and until then nobody else may use it, so filling and reading
// it is ours to do.
unsafe impl GlobalAlloc for QuarantineAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is forwarded as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    // `realloc` is the trait's default: alloc, copy, dealloc, so the old
    // block goes through the quarantine too.

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller frees the block, so it is ours to overwrite.
        unsafe { std::ptr::write_bytes(ptr, PATTERN, layout.size()) };
        let block = Block {
            ptr,
            size: layout.size(),
            align: layout.align(),
            reported: false,
        };
        QUARANTINE.with(|ring| ring.push(block));
    }
}

#[global_allocator]
static ALLOC: QuarantineAlloc = QuarantineAlloc;

/// Verifies every block in quarantine (without releasing any) and returns
/// how many are corrupted now.
fn check_quarantine() -> usize {
    QUARANTINE.with(|ring| {
        let (head, len) = (ring.head, ring.len);
        (head..head + len).filter(|&i| ring.verify(i)).count()
    })
}

/// Evicts (verifies and releases) every block in quarantine and returns how
/// many of them were corrupted.
fn flush_quarantine() -> usize {
    QUARANTINE.with(|ring| {
        let mut corrupted = 0;
        while ring.len > 0 {
            corrupted += usize::from(ring.evict_oldest());
        }
        corrupted
    })
}

/// All corrupted blocks found so far (by evictions, checks and flushes), and
/// the first [`REPORTS`] of them.
fn corruptions() -> (usize, Vec<Corruption>) {
    // Copied out under the lock, the Vec built after it is released.
    let (total, reports) = QUARANTINE.with(|ring| (ring.corrupted, ring.reports));
    (total, reports.iter().flatten().copied().collect())
}

/// Empties the quarantine and forgets earlier reports.
fn reset_quarantine() {
    flush_quarantine();
    QUARANTINE.with(|ring| {
        ring.corrupted = 0;
        ring.reports = [None; REPORTS];
    });
}

/// The end of every scenario, after its runtime was dropped: nothing in
/// quarantine is corrupted now, nothing evicted during the scenario was,
/// and nothing is when the whole quarantine is flushed.
fn assert_no_corruption(scenario: &str) {
    let now = check_quarantine();
    let flushed = flush_quarantine();
    let (total, reports) = corruptions();
    assert!(
        now == 0 && flushed == 0 && total == 0,
        "{scenario}: the kernel wrote into freed memory: {total} corrupted block(s) \
         ({now} found by check_quarantine, {flushed} by the final flush); \
         first ones (address, size, first changed offset and byte): {reports:#x?}"
    );
}

/// The kinds of runtime every scenario runs on.
#[derive(Clone, Copy, Debug)]
enum Flavor {
    /// `Runtime::new()`: with `IORING_SETUP_DEFER_TASKRUN` the kernel
    /// finishes reads of pollable files only while the runtime's thread is
    /// in `io_uring_enter`.
    Default,
    /// `Builder::sqpoll`: the kernel's submission thread finishes them at
    /// any time, concurrently with the runtime's thread, so a buffer freed
    /// too early is written into as soon as the late data arrives.
    Sqpoll,
}

impl Flavor {
    fn runtime(self) -> Runtime {
        match self {
            Flavor::Default => Runtime::new().unwrap(),
            Flavor::Sqpoll => Runtime::builder()
                .sqpoll(Duration::from_millis(20))
                .build()
                .unwrap(),
        }
    }
}

/// Tests of this file run one at a time: the allocator is global.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs one test: serially, with a clean quarantine, under a 60 s deadline.
fn quarantine_test(f: impl FnOnce() + Send + 'static) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    reset_quarantine();
    with_deadline(Duration::from_secs(60), f);
}

/// Runs one scenario test (as [`quarantine_test`]) once per [`Flavor`].
fn each_flavor(f: impl Fn(Flavor) + Send + 'static) {
    quarantine_test(move || {
        for flavor in [Flavor::Default, Flavor::Sqpoll] {
            f(flavor);
        }
    });
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Capacity of the abandoned reads' buffers.
const READ_BUF: usize = 64 * 1024;
/// How long an abandoned read waits before its timeout drops it.
const SHORT: Duration = Duration::from_millis(1);

/// A pipe: (read end, write end), both blocking.
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two-int array.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just created and are owned by nobody
    // else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// A connected loopback TCP pair: (the runtime's side, the peer's side).
fn tcp_pair() -> (std::net::TcpStream, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (ours, _) = listener.accept().unwrap();
    (ours, peer)
}

/// Writes all of `data` to `fd` with plain `write(2)`.
fn write_fd(fd: RawFd, data: &[u8]) {
    let mut done = 0;
    while done < data.len() {
        // SAFETY: reads initialised bytes of a live slice.
        let n = unsafe { libc::write(fd, data[done..].as_ptr().cast(), data.len() - done) };
        assert!(n > 0, "write: {}", std::io::Error::last_os_error());
        done += n as usize;
    }
}

/// Reads and discards whatever is buffered in `fd` now (`FIONREAD`, so it
/// never blocks), leaving it empty for the next round's read to wait.
fn drain(fd: RawFd) {
    let mut buf = [0u8; 4096];
    loop {
        let mut avail: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int.
        let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut avail) };
        assert_eq!(rc, 0, "FIONREAD: {}", std::io::Error::last_os_error());
        if avail <= 0 {
            return;
        }
        let want = (avail as usize).min(buf.len());
        // SAFETY: reads at most `want` bytes into a live stack buffer; that
        // many are buffered, so it does not block.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), want) };
        assert!(n > 0, "read: {}", std::io::Error::last_os_error());
    }
}

/// Lets the runtime run a few ticks (the cancels go out, late CQEs come in).
async fn turn(ticks: usize) {
    for _ in 0..ticks {
        runtime::yield_now().await;
    }
}

/// When, relative to the abandoned read, the late data is written.
#[derive(Clone, Copy, Debug)]
enum Late {
    /// Right after the timeout fired, before the runtime turns again (the
    /// cancel is not even submitted yet).
    BeforeTurn,
    /// After the runtime turned once (the cancel is in the kernel).
    AfterTurn,
    /// After a short sleep (the cancel has most likely completed).
    AfterSleep,
    /// From another thread, at its own pace, while the runtime goes on.
    OtherThread,
}

const LATE: [Late; 4] = [
    Late::BeforeTurn,
    Late::AfterTurn,
    Late::AfterSleep,
    Late::OtherThread,
];

/// Writes `data` to `fd` at the moment `late` says; the returned thread, if
/// any, must be joined before `fd` is closed.
async fn write_late(
    late: Late,
    fd: RawFd,
    data: &'static [u8],
) -> Option<std::thread::JoinHandle<()>> {
    match late {
        Late::BeforeTurn => write_fd(fd, data),
        Late::AfterTurn => {
            turn(1).await;
            write_fd(fd, data);
        }
        Late::AfterSleep => {
            runtime::time::sleep(SHORT).await;
            write_fd(fd, data);
        }
        Late::OtherThread => {
            return Some(std::thread::spawn(move || {
                std::thread::sleep(Duration::from_micros(200));
                write_fd(fd, data);
            }))
        }
    }
    None
}

/// Ends a round: the late writer is done, the abandoned op's final CQE
/// arrived (nothing is in flight any more, so no kernel read can race the
/// drain: with an SQPOLL ring the cancel may take the kernel thread a
/// while), and `drain_fd` is empty again.
async fn finish_round(writer: Option<std::thread::JoinHandle<()>>, drain_fd: RawFd) {
    if let Some(w) = writer {
        // Keep the runtime turning while the thread writes.
        while !w.is_finished() {
            runtime::time::sleep(Duration::from_micros(100)).await;
        }
        w.join().unwrap();
    }
    turn(4).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while runtime::op::in_flight() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the abandoned read never completed"
        );
        runtime::time::sleep(Duration::from_millis(1)).await;
    }
    drain(drain_fd);
}

/// Late data: bigger than a page, never the pattern.
static LATE_DATA: [u8; 6000] = [0x42; 6000];

/// A read submitted through `runtime::op` directly, with `IOSQE_ASYNC`: the
/// kernel runs it as a blocking read on an io-wq worker thread, which copies
/// late data into the buffer from another CPU.
fn async_read(fd: &SharedFd, buf: Vec<u8>) -> Op<(SharedFd, Vec<u8>)> {
    // SAFETY: the SQE points only into the Vec's heap buffer (its spare
    // capacity), owned by the op's data; the SharedFd clone in the same
    // data keeps the descriptor open until the last CQE.
    unsafe {
        Op::submit((fd.clone(), buf), |(fd, buf)| {
            opcode::Read::new(fd.target(), buf.as_mut_ptr(), buf.capacity() as u32)
                .offset(u64::MAX)
                .build()
                .flags(squeue::Flags::ASYNC)
        })
    }
}

/// `rounds` reads, each abandoned by a short timeout while no data is there;
/// the late data is written afterwards as `LATE` cycles through its cases.
/// `read` makes a round's read future from a fresh buffer; `write_fd`
/// gets the late data, `drain_fd` is emptied after each round. Returns how
/// many reads timed out (rather than finding leftover data).
async fn abandon_reads<F, Fut>(rounds: usize, read: F, write_fd: RawFd, drain_fd: RawFd) -> usize
where
    F: Fn(Vec<u8>) -> Fut,
    Fut: Future,
{
    let mut timed_out = 0;
    for round in 0..rounds {
        let fut = read(Vec::with_capacity(READ_BUF));
        if runtime::time::timeout(SHORT, fut).await.is_err() {
            timed_out += 1;
        }
        let writer = write_late(LATE[round % LATE.len()], write_fd, &LATE_DATA).await;
        finish_round(writer, drain_fd).await;
    }
    timed_out
}

// ---------------------------------------------------------------------------
// The detector's self-test
// ---------------------------------------------------------------------------

/// The data of the self-test's read: a bare pointer, owning nothing. It
/// lets the test free the buffer while the kernel still has it, which the
/// op contract forbids.
struct RawBuf {
    ptr: *mut u8,
    len: usize,
}

/// The detector sees the kernel writing into freed memory, and reports
/// exactly that block.
///
/// This test **deliberately violates the op contract** of
/// [`Op::submit`]: the read's data is a bare pointer to a buffer allocated
/// with `std::alloc::alloc`, which the test frees with `std::alloc::dealloc`
/// while the read is in flight. Writing to the pipe afterwards makes the
/// kernel copy the bytes into the freed block; the quarantine holds that
/// block (the system allocator never sees it freed, so no other allocation
/// can be hurt and AddressSanitizer has nothing to say), and
/// `check_quarantine` must find exactly it.
#[test]
fn detector_reports_kernel_write_into_freed_block() {
    if integration_tests::skip_on_epoll(
        "raw io_uring SQEs (Op::submit) and the kernel writing into parked memory are io_uring's",
    ) {
        return;
    }
    quarantine_test(|| {
        const SIZE: usize = 4096;
        const MESSAGE: &[u8] = b"the kernel writes into freed memory";
        let layout = Layout::from_size_align(SIZE, 16).unwrap();
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc(layout) };
        assert!(!ptr.is_null());
        let (r, w) = pipe();
        let rt = Runtime::new().unwrap();
        let n = rt.block_on(async {
            // SAFETY: NOT upheld on purpose (see the test's doc): the SQE
            // points at a heap block that `RawBuf` does not own, and the
            // block is freed below while the read is in flight. The pipe's
            // read end stays open until after the runtime is dropped.
            let op = unsafe {
                Op::submit(RawBuf { ptr, len: SIZE }, |b| {
                    opcode::Read::new(types::Fd(r.as_raw_fd()), b.ptr, b.len as u32).build()
                })
            };
            // One tick submits the SQE; the pipe is empty, so it waits.
            turn(1).await;
            // SAFETY: `ptr` came from `alloc` with `layout` and is not used
            // by this code afterwards (only the kernel still has it).
            unsafe { std::alloc::dealloc(ptr, layout) };
            write_fd(w.as_raw_fd(), MESSAGE);
            let (completion, _) = op.await;
            completion.result().unwrap() as usize
        });
        drop(rt);
        assert_eq!(n, MESSAGE.len(), "the read completed with the message");

        let found = check_quarantine();
        let (total, reports) = corruptions();
        assert_eq!(
            (found, total),
            (1, 1),
            "exactly the freed read buffer is corrupted: {reports:#x?}"
        );
        assert_eq!(
            reports,
            [Corruption {
                addr: ptr as usize,
                size: SIZE,
                offset: 0,
                byte: MESSAGE[0],
            }],
            "the report names the freed buffer"
        );
        // Eviction sees it too (and it is counted once).
        assert_eq!(flush_quarantine(), 1);
        assert_eq!(corruptions().0, 1);
        reset_quarantine();
        assert_eq!(check_quarantine(), 0);
    });
}

// ---------------------------------------------------------------------------
// Reads abandoned while data arrives later
// ---------------------------------------------------------------------------

/// TCP reads (`net::TcpStream::read`) abandoned by `runtime::time::timeout`
/// while no data is there, with the peer writing afterwards (before the
/// runtime turns, after, after a sleep, from another thread): the late data
/// never lands in freed memory.
#[test]
fn tcp_reads_abandoned_then_data_arrives() {
    each_flavor(|flavor| {
        let (ours, peer) = tcp_pair();
        let rt = flavor.runtime();
        let stream = net::TcpStream::from_std(ours);
        let fd = stream.as_raw_fd();
        let timed_out = rt.block_on(abandon_reads(
            400,
            |buf| stream.read(buf),
            peer.as_raw_fd(),
            fd,
        ));
        assert!(timed_out > 0, "no read was ever abandoned");
        drop(rt);
        drop(stream);
        drop(peer);
        assert_no_corruption(&format!("TCP reads abandoned ({flavor:?})"));
    });
}

/// The same with a Unix socket pair (`net::UnixStream::pair`) and its
/// `runtime::io::OwnedRead` impl.
#[test]
fn unix_reads_abandoned_then_data_arrives() {
    each_flavor(|flavor| {
        let rt = flavor.runtime();
        let (ours, peer) = rt.block_on(async { net::UnixStream::pair() }).unwrap();
        let timed_out = rt.block_on(abandon_reads(
            400,
            |buf| OwnedRead::read(&ours, buf),
            peer.as_raw_fd(),
            ours.as_raw_fd(),
        ));
        assert!(timed_out > 0, "no read was ever abandoned");
        drop(rt);
        drop((ours, peer));
        assert_no_corruption(&format!("Unix socket reads abandoned ({flavor:?})"));
    });
}

/// Pipe reads through `fs::File` (the stream read at the file position),
/// abandoned, with data written to the pipe afterwards.
#[test]
fn pipe_reads_abandoned_then_data_arrives() {
    each_flavor(|flavor| {
        let (r, w) = pipe();
        let rt = flavor.runtime();
        let file = fs::File::from_std(std::fs::File::from(r));
        let fd = file.as_raw_fd();
        let timed_out = rt.block_on(abandon_reads(
            400,
            |buf| OwnedRead::read(&file, buf),
            w.as_raw_fd(),
            fd,
        ));
        assert!(timed_out > 0, "no read was ever abandoned");
        drop(rt);
        drop((file, w));
        assert_no_corruption(&format!("pipe reads abandoned ({flavor:?})"));
    });
}

/// Reads submitted with `IOSQE_ASYNC` through `runtime::op` (so an io-wq
/// worker thread is blocked in the read and copies late data from another
/// CPU), on a pipe and on a TCP socket, abandoned by a timeout.
#[test]
fn async_worker_reads_abandoned_then_data_arrives() {
    if integration_tests::skip_on_epoll(
        "raw io_uring SQEs (Op::submit) and the kernel writing into parked memory are io_uring's",
    ) {
        return;
    }
    each_flavor(|flavor| {
        let (r, w) = pipe();
        let (ours, peer) = tcp_pair();
        let rt = flavor.runtime();
        let pipe_fd = SharedFd::new(r);
        let sock_fd = SharedFd::new(OwnedFd::from(ours));
        let (pipe_timeouts, sock_timeouts) = rt.block_on(async {
            let p = abandon_reads(
                300,
                |buf| async_read(&pipe_fd, buf),
                w.as_raw_fd(),
                pipe_fd.raw(),
            )
            .await;
            let s = abandon_reads(
                300,
                |buf| async_read(&sock_fd, buf),
                peer.as_raw_fd(),
                sock_fd.raw(),
            )
            .await;
            (p, s)
        });
        assert!(
            pipe_timeouts > 0 && sock_timeouts > 0,
            "no read was ever abandoned"
        );
        drop(rt);
        drop((pipe_fd, sock_fd, w, peer));
        assert_no_corruption(&format!("IOSQE_ASYNC reads abandoned ({flavor:?})"));
    });
}

// ---------------------------------------------------------------------------
// Files closed with ops in flight
// ---------------------------------------------------------------------------

/// A FIFO in the temporary directory, removed on drop.
struct Fifo(std::path::PathBuf);

impl Fifo {
    fn new() -> Fifo {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "quarantine-fifo-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&path);
        let c = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
        assert_eq!(rc, 0, "mkfifo: {}", std::io::Error::last_os_error());
        Fifo(path)
    }

    /// Opens it for reading, blocking mode (a writer must exist already,
    /// or `O_NONBLOCK` is used for the open and cleared after).
    fn reader(&self) -> std::fs::File {
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&self.0)
            .unwrap();
        // SAFETY: plain fcntl calls on a descriptor we own.
        unsafe {
            let flags = libc::fcntl(f.as_raw_fd(), libc::F_GETFL);
            assert!(flags >= 0);
            assert_eq!(
                libc::fcntl(f.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK),
                0
            );
        }
        f
    }

    /// Opens it for writing (a reader must be open).
    fn writer(&self) -> std::fs::File {
        OpenOptions::new().write(true).open(&self.0).unwrap()
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// How a round abandons its file read.
#[derive(Clone, Copy, Debug)]
enum Abandon {
    /// `read_at` future dropped by a timeout, then the `File` dropped.
    ReadAtThenFile,
    /// One future owning both the `File` and its `read_at`, dropped by a
    /// timeout.
    FutureOwningFile,
    /// A spawned task owning the `File`, in `read_at`, aborted.
    AbortedTask,
    /// The stream read (file position) dropped by a timeout, then the
    /// `File` dropped.
    CursorReadThenFile,
}

const ABANDON: [Abandon; 4] = [
    Abandon::ReadAtThenFile,
    Abandon::FutureOwningFile,
    Abandon::AbortedTask,
    Abandon::CursorReadThenFile,
];

/// Opens a fresh read handle with `open`, starts a read on it as `how`
/// says, abandons it and drops the `File` with the read in flight; the
/// late data is written to `write_fd` afterwards. `drain_fd` is another
/// read handle of the same pipe, kept open. Returns how many rounds had a
/// read still pending when it was abandoned.
async fn close_files_in_flight(
    rounds: usize,
    open: impl Fn() -> std::fs::File,
    write_fd: RawFd,
    drain_fd: RawFd,
) -> usize {
    let mut pending = 0;
    for round in 0..rounds {
        let file = fs::File::from_std(open());
        let buf = Vec::with_capacity(READ_BUF);
        match ABANDON[round % ABANDON.len()] {
            Abandon::ReadAtThenFile => {
                let res = runtime::time::timeout(SHORT, file.read_at(buf, 0)).await;
                pending += usize::from(res.is_err());
                drop(file);
            }
            Abandon::FutureOwningFile => {
                let fut = async move { file.read_at(buf, 0).await };
                let res = runtime::time::timeout(SHORT, fut).await;
                pending += usize::from(res.is_err());
            }
            Abandon::AbortedTask => {
                let started = Rc::new(Cell::new(false));
                let s = started.clone();
                let task = runtime::spawn(async move {
                    s.set(true);
                    file.read_at(buf, 0).await.0.map(|_| ())
                });
                while !started.get() {
                    runtime::yield_now().await;
                }
                turn(1).await;
                pending += usize::from(!task.is_finished());
                task.abort();
                let _ = task.await;
            }
            Abandon::CursorReadThenFile => {
                let res = runtime::time::timeout(SHORT, OwnedRead::read(&file, buf)).await;
                pending += usize::from(res.is_err());
                drop(file);
            }
        }
        let writer = write_late(
            LATE[(round / ABANDON.len()) % LATE.len()],
            write_fd,
            &LATE_DATA,
        )
        .await;
        finish_round(writer, drain_fd).await;
    }
    pending
}

/// `fs::File` reads on a FIFO (made with `mkfifo`), abandoned in four ways
/// with the `File` dropped (so its descriptor is closed) while the read is
/// in flight; then data is written to the FIFO: it never lands in freed
/// memory.
#[test]
fn fifo_files_closed_with_reads_in_flight() {
    each_flavor(|flavor| {
        let fifo = Fifo::new();
        let keeper = fifo.reader();
        let writer = fifo.writer();
        let rt = flavor.runtime();
        let pending = rt.block_on(close_files_in_flight(
            240,
            || fifo.reader(),
            writer.as_raw_fd(),
            keeper.as_raw_fd(),
        ));
        assert!(pending > 0, "no read was ever in flight when abandoned");
        drop(rt);
        drop((keeper, writer, fifo));
        assert_no_corruption(&format!(
            "FIFO files closed with reads in flight ({flavor:?})"
        ));
    });
}

/// The same with an anonymous pipe whose read end is duplicated into a new
/// `fs::File` each round.
#[test]
fn pipe_files_closed_with_reads_in_flight() {
    each_flavor(|flavor| {
        let (r, w) = pipe();
        let rt = flavor.runtime();
        let pending = rt.block_on(close_files_in_flight(
            240,
            || std::fs::File::from(r.try_clone().unwrap()),
            w.as_raw_fd(),
            r.as_raw_fd(),
        ));
        assert!(pending > 0, "no read was ever in flight when abandoned");
        drop(rt);
        drop((r, w));
        assert_no_corruption(&format!(
            "pipe files closed with reads in flight ({flavor:?})"
        ));
    });
}

// ---------------------------------------------------------------------------
// Runtime dropped mid-transfer
// ---------------------------------------------------------------------------

/// Connections per round of the runtime-drop test.
const CONNS: usize = 4;
/// Reading and writing tasks per connection.
const TASKS_PER_CONN: usize = 2;
/// Buffer sizes of the runtime side.
const BIG_READ: usize = 256 * 1024;
const BIG_WRITE: usize = 1024 * 1024;

/// One round: `CONNS` loopback connections, each with reading and writing
/// tasks (large buffers, a fresh read buffer per read) and a peer writer and
/// reader thread; once data flows, `block_on` returns with every op in
/// flight and the runtime is dropped while the peers still write.
fn runtime_drop_round(flavor: Flavor) {
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let mut peers = Vec::new();
    let mut threads = Vec::new();
    let mut ours = Vec::new();
    for _ in 0..CONNS {
        let (o, peer) = tcp_pair();
        ours.push(o);
        let mut w = peer.try_clone().unwrap();
        let mut r = peer.try_clone().unwrap();
        let stop_w = stop.clone();
        threads.push(std::thread::spawn(move || {
            let chunk = vec![0x5Au8; 64 * 1024];
            while !stop_w.load(Ordering::Relaxed) {
                if w.write_all(&chunk).is_err() {
                    break;
                }
            }
        }));
        threads.push(std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = std::io::Read::read(&mut r, &mut buf) {
                if n == 0 {
                    break;
                }
            }
        }));
        peers.push(peer);
    }

    let rt = flavor.runtime();
    let received = Rc::new(Cell::new(0usize));
    rt.block_on(async {
        for o in ours {
            let stream = Rc::new(net::TcpStream::from_std(o));
            for _ in 0..TASKS_PER_CONN {
                let (s, got) = (stream.clone(), received.clone());
                drop(runtime::spawn(async move {
                    loop {
                        // A fresh buffer each time: the old one is freed
                        // (into quarantine) while other reads are in flight.
                        let (res, buf) = s.read(Vec::with_capacity(BIG_READ)).await;
                        match res {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.set(got.get() + n),
                        }
                        drop(buf);
                    }
                }));
                let s = stream.clone();
                drop(runtime::spawn(async move {
                    let mut buf = vec![0xA5u8; BIG_WRITE];
                    loop {
                        let (res, b) = s.write_all(buf).await;
                        if res.is_err() {
                            return;
                        }
                        buf = b;
                    }
                }));
            }
        }
        // Until data flows both ways; then return with everything in flight.
        let wanted = CONNS * 4 * BIG_READ;
        while received.get() < wanted {
            runtime::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(
            runtime::op::in_flight() > 0,
            "ops are in flight at the drop"
        );
    });
    drop(rt);

    // The peers were writing until now; stop them (their sockets may not be
    // closed yet if the runtime leaked anything).
    stop.store(true, Ordering::Relaxed);
    for p in &peers {
        let _ = p.shutdown(Shutdown::Both);
    }
    for t in threads {
        t.join().unwrap();
    }
}

/// A runtime dropped with many large TCP reads and writes in flight while
/// the peers keep writing: the runtime waits for the kernel (or leaks),
/// never frees a buffer the kernel still fills.
#[test]
fn runtime_dropped_mid_transfer() {
    if integration_tests::skip_on_epoll(
        "raw io_uring SQEs (Op::submit) and the kernel writing into parked memory are io_uring's",
    ) {
        return;
    }
    each_flavor(|flavor| {
        for round in 0..6 {
            runtime_drop_round(flavor);
            assert_no_corruption(&format!(
                "runtime dropped mid-transfer, round {round} ({flavor:?})"
            ));
        }
    });
}

/// A runtime dropped with pipe reads in flight (in spawned tasks, through
/// `fs::File` and through `runtime::op` with `IOSQE_ASYNC`) and abandoned
/// reads parked in it, while another thread keeps writing into the pipes
/// during and after the drop.
#[test]
fn runtime_dropped_with_pipe_reads_while_peer_writes() {
    if integration_tests::skip_on_epoll(
        "raw io_uring SQEs (Op::submit) and the kernel writing into parked memory are io_uring's",
    ) {
        return;
    }
    each_flavor(|flavor| {
        for _ in 0..10 {
            let pipes: Vec<_> = (0..18).map(|_| pipe()).collect();
            let writers: Vec<RawFd> = pipes.iter().map(|(_, w)| w.as_raw_fd()).collect();
            for &w in &writers {
                // SAFETY: plain fcntl calls on open descriptors: the write
                // ends become non-blocking, so a full pipe never blocks the
                // writer thread.
                unsafe {
                    let flags = libc::fcntl(w, libc::F_GETFL);
                    assert!(flags >= 0);
                    assert_eq!(libc::fcntl(w, libc::F_SETFL, flags | libc::O_NONBLOCK), 0);
                }
            }
            let stop = std::sync::Arc::new(AtomicBool::new(false));
            let stop_w = stop.clone();
            let writer = std::thread::spawn(move || {
                while !stop_w.load(Ordering::Relaxed) {
                    for &w in &writers {
                        // SAFETY: writes 100 bytes of a static buffer to a
                        // pipe that stays open until this thread is joined;
                        // EAGAIN (a full pipe) is ignored.
                        unsafe { libc::write(w, LATE_DATA.as_ptr().cast(), 100) };
                    }
                    std::thread::sleep(Duration::from_micros(50));
                }
            });
            let rt = flavor.runtime();
            let fds: Vec<SharedFd> = pipes
                .iter()
                .map(|(r, _)| SharedFd::new(r.try_clone().unwrap()))
                .collect();
            rt.block_on(async {
                for (i, fd) in fds.iter().enumerate() {
                    match i % 3 {
                        0 => {
                            let fd = fd.clone();
                            drop(runtime::spawn(async move {
                                loop {
                                    let (c, _) =
                                        async_read(&fd, Vec::with_capacity(READ_BUF)).await;
                                    if c.result().is_err() {
                                        return;
                                    }
                                }
                            }));
                        }
                        1 => {
                            let file = fs_file(fd);
                            drop(runtime::spawn(async move {
                                loop {
                                    let buf = Vec::with_capacity(READ_BUF);
                                    if OwnedRead::read(&file, buf).await.0.is_err() {
                                        return;
                                    }
                                }
                            }));
                        }
                        _ => {
                            // Polled once, then dropped: parked in the runtime.
                            let mut op = pin!(async_read(fd, Vec::with_capacity(READ_BUF)));
                            std::future::poll_fn(|cx| {
                                let _ = op.as_mut().poll(cx);
                                Poll::Ready(())
                            })
                            .await;
                        }
                    }
                }
                turn(3).await;
            });
            drop(rt);
            drop(fds);
            stop.store(true, Ordering::Relaxed);
            writer.join().unwrap();
            drop(pipes);
            assert_no_corruption(&format!(
                "runtime dropped with pipe reads in flight ({flavor:?})"
            ));
        }
    });
}

/// An `fs::File` on a duplicate of `fd`'s descriptor.
fn fs_file(fd: &SharedFd) -> fs::File {
    // SAFETY: dup of a descriptor that is open (kept by `fd`).
    let dup = unsafe { libc::fcntl(fd.raw(), libc::F_DUPFD_CLOEXEC, 0) };
    assert!(dup >= 0, "dup: {}", std::io::Error::last_os_error());
    // SAFETY: `dup` was just created and is owned by nobody else.
    fs::File::from_std(unsafe { std::fs::File::from_raw_fd(dup) })
}

/// Poll-style reads (tokio's `AsyncRead` on `net::TcpStream`, feature
/// `tokio-io`) given up by a timeout, then the stream dropped with its wait
/// still in flight while the peer writes: the wait is a multishot
/// `IORING_OP_POLL_ADD`, cancelled when the stream goes; its descriptor
/// must stay open, and nothing of the stream be written, until the kernel
/// is done with it.
#[test]
fn poll_style_streams_dropped_with_waits_in_flight() {
    each_flavor(|flavor| {
        {
            let rt = flavor.runtime();
            let gave_up = rt.block_on(async move {
                let mut gave_up = 0;
                for _ in 0..100 {
                    let (ours, peer) = tcp_pair();
                    let mut stream = net::TcpStream::from_std(ours);
                    let mut buf = [0u8; 64];
                    let read = tokio::io::AsyncReadExt::read(&mut stream, &mut buf);
                    if runtime::time::timeout(SHORT, read).await.is_err() {
                        gave_up += 1;
                    }
                    drop(stream);
                    // The peer writes while the dropped stream's wait is
                    // being cancelled (its descriptor is still open then).
                    write_fd(peer.as_raw_fd(), &[7u8; 4096]);
                    runtime::yield_now().await;
                    drop(peer);
                }
                gave_up
            });
            assert!(gave_up > 0, "no read was ever given up");
            drop(rt);
            assert_no_corruption(&format!("poll-style streams dropped ({flavor:?})"));
        }
    });
}
