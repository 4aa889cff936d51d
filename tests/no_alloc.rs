//! The hot path of an operation allocates nothing (`DESIGN.md`, "No heap
//! allocation per operation on the hot path": slab slots are reused, op
//! state lives in the future).
//!
//! A `#[global_allocator]` counts the allocations made by the current
//! thread while counting is switched on for it (other threads, such as the
//! test harness, are not counted). After a warm-up, 10,000 rounds of a
//! write op and a read op, awaited one after the other inside one
//! `block_on` (no spawn), must not allocate at all.
//!
//! To find where allocations come from, run with `NO_ALLOC_BACKTRACE=1`:
//! the first few counted allocations print a backtrace to stderr.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use integration_tests::with_deadline;
use runtime::op::io_uring::{opcode, types};
use runtime::op::{in_flight, Op};

/// Counts allocations of threads that switched counting on.
struct CountingAlloc;

thread_local! {
    /// Counting is on for this thread. `const` and destructor-free, so
    /// accessing it never allocates or registers anything.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    /// Allocations counted on this thread.
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

/// Print a backtrace for counted allocations (set from the environment
/// before counting starts: reading the environment allocates).
static BACKTRACES: AtomicBool = AtomicBool::new(false);
/// How many backtraces are left to print.
static BACKTRACES_LEFT: AtomicUsize = AtomicUsize::new(8);

fn note_allocation(size: usize) {
    // try_with: never touch a thread-local being torn down.
    if !COUNTING.try_with(Cell::get).unwrap_or(false) {
        return;
    }
    let _ = COUNT.try_with(|c| c.set(c.get() + 1));
    if BACKTRACES.load(Ordering::Relaxed)
        && BACKTRACES_LEFT
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    {
        // Counting off while printing: the backtrace itself allocates.
        COUNTING.set(false);
        let bt = std::backtrace::Backtrace::force_capture();
        eprintln!("counted allocation of {size} bytes:\n{bt}");
        COUNTING.set(true);
    }
}

// SAFETY: forwards every call unchanged to the system allocator; the
// bookkeeping touches only const thread-locals without destructors (no
// allocation, no re-entrance except through the guarded backtrace path).
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        // SAFETY: the caller's contract is forwarded as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Counts the allocations this thread makes while `f` runs.
fn count_allocations<R>(f: impl FnOnce() -> R) -> (usize, R) {
    COUNT.set(0);
    COUNTING.set(true);
    let r = f();
    COUNTING.set(false);
    (COUNT.get(), r)
}

const LIMIT: Duration = Duration::from_secs(60);
const WARM_UP: usize = 100;
const MEASURED: usize = 10_000;
const LEN: usize = 64;

fn setup_backtraces() {
    if std::env::var_os("NO_ALLOC_BACKTRACE").is_some_and(|v| !v.is_empty() && v != "0") {
        BACKTRACES.store(true, Ordering::Relaxed);
    }
}

fn close(fd: RawFd) {
    // SAFETY: the test owns `fd` and closes it once, after its ops ended.
    assert_eq!(unsafe { libc::close(fd) }, 0);
}

/// Writes `buf` (all of it) to `fd` with a write op and gives it back.
/// The callers keep `fd` open until the op completes.
async fn write_op(fd: RawFd, buf: Vec<u8>) -> Vec<u8> {
    // SAFETY: the SQE points only into the Vec's heap buffer, owned by the
    // op until its completion; the caller keeps `fd` open.
    let op = unsafe {
        Op::submit(buf, |b| {
            opcode::Write::new(types::Fd(fd), b.as_ptr(), b.len() as u32).build()
        })
    };
    let (c, buf) = op.await;
    assert_eq!(c.raw_result(), buf.len() as i32, "write: {c:?}");
    buf
}

/// Submits a read op of `fd` into the spare capacity of the empty `buf`.
fn read_op(fd: RawFd, buf: Vec<u8>) -> Op<Vec<u8>> {
    assert!(buf.is_empty());
    // SAFETY: the SQE points only into the Vec's heap buffer (its spare
    // capacity), owned by the op until its completion; the callers keep
    // `fd` open until the op completes.
    unsafe {
        Op::submit(buf, |b| {
            opcode::Read::new(types::Fd(fd), b.as_mut_ptr(), b.capacity() as u32).build()
        })
    }
}

/// Awaits a read op and sets the buffer's length to what the kernel wrote.
async fn finish_read(op: Op<Vec<u8>>) -> Vec<u8> {
    let (c, mut buf) = op.await;
    let n = c.result().unwrap_or_else(|e| panic!("read: {e}")) as usize;
    assert!(n <= buf.capacity());
    // SAFETY: the kernel initialised the first `n` bytes of the buffer.
    unsafe { buf.set_len(n) };
    buf
}

/// Fills the write buffer with a pattern of round `i`.
fn fill(buf: &mut [u8], i: usize) {
    for (k, b) in buf.iter_mut().enumerate() {
        *b = (i + k) as u8;
    }
}

/// Asserts no allocation was counted, with a hint on how to find them.
fn assert_no_allocations(count: usize, what: &str) {
    assert_eq!(
        count, 0,
        "{count} heap allocations during {MEASURED} rounds of {what} \
         (rerun with NO_ALLOC_BACKTRACE=1 to see where they come from)"
    );
}

/// Over a pipe: 10,000 rounds (after 100 of warm-up) of a 64-byte write op
/// followed by a read op into a `Vec` that is taken back, checked and
/// cleared each time, all awaited in one `block_on` without spawning:
/// zero heap allocations on the runtime's thread, and every round's bytes
/// arrive intact.
#[test]
fn write_then_read_over_pipe_does_not_allocate() {
    if integration_tests::skip_on_epoll("raw io_uring SQEs (Op::submit) are io_uring's") {
        return;
    }
    setup_backtraces();
    with_deadline(LIMIT, || {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: pipe2 fills the two-int array.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        let (r, w) = (fds[0], fds[1]);
        let rt = runtime::Runtime::new().unwrap();
        let count = rt.block_on(async move {
            let mut wbuf = vec![0u8; LEN];
            let mut rbuf = Vec::with_capacity(LEN);
            // One round: returns the buffers for the next.
            let round = |i: usize, mut wbuf: Vec<u8>, rbuf: Vec<u8>| async move {
                fill(&mut wbuf, i);
                let wbuf = write_op(w, wbuf).await;
                let mut rbuf = finish_read(read_op(r, rbuf)).await;
                assert_eq!(rbuf[..], wbuf[..], "round {i}: wrong bytes");
                rbuf.clear();
                (wbuf, rbuf)
            };
            for i in 0..WARM_UP {
                (wbuf, rbuf) = round(i, wbuf, rbuf).await;
            }
            COUNT.set(0);
            COUNTING.set(true);
            for i in WARM_UP..WARM_UP + MEASURED {
                (wbuf, rbuf) = round(i, wbuf, rbuf).await;
            }
            COUNTING.set(false);
            assert_eq!(in_flight(), 0);
            COUNT.get()
        });
        drop(rt);
        close(r);
        close(w);
        assert_no_allocations(count, "write op + read op over a pipe");
    });
}

/// Over a socketpair, with the read submitted *before* the write each
/// round, so the read waits in the kernel and completes later (the
/// asynchronous completion path: poll-armed in the kernel, CQE reaped on a
/// later turn, waker woken): 10,000 measured rounds allocate nothing.
#[test]
fn read_in_flight_then_write_over_socketpair_does_not_allocate() {
    if integration_tests::skip_on_epoll("raw io_uring SQEs (Op::submit) are io_uring's") {
        return;
    }
    setup_backtraces();
    with_deadline(LIMIT, || {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: socketpair fills the two-int array.
        let rc = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        assert_eq!(rc, 0);
        let (a, b) = (fds[0], fds[1]);
        let rt = runtime::Runtime::new().unwrap();
        let count = rt.block_on(async move {
            let mut wbuf = vec![0u8; LEN];
            let mut rbuf = Vec::with_capacity(LEN);
            let round = |i: usize, mut wbuf: Vec<u8>, rbuf: Vec<u8>| async move {
                fill(&mut wbuf, i);
                let read = read_op(b, rbuf);
                // Let the read reach the kernel (and wait there) first.
                runtime::yield_now().await;
                let wbuf = write_op(a, wbuf).await;
                let mut rbuf = finish_read(read).await;
                assert_eq!(rbuf[..], wbuf[..], "round {i}: wrong bytes");
                rbuf.clear();
                (wbuf, rbuf)
            };
            for i in 0..WARM_UP {
                (wbuf, rbuf) = round(i, wbuf, rbuf).await;
            }
            COUNT.set(0);
            COUNTING.set(true);
            for i in WARM_UP..WARM_UP + MEASURED {
                (wbuf, rbuf) = round(i, wbuf, rbuf).await;
            }
            COUNTING.set(false);
            assert_eq!(in_flight(), 0);
            COUNT.get()
        });
        drop(rt);
        close(a);
        close(b);
        assert_no_allocations(count, "read op in flight + write op over a socketpair");
    });
}

/// The counting allocator works: an allocation made while counting is
/// counted (so a zero above is meaningful), and one made meanwhile by
/// another thread is not.
#[test]
fn counting_allocator_counts_this_thread_only() {
    with_deadline(LIMIT, || {
        let (count, v) = count_allocations(|| std::hint::black_box(vec![1u8; 100]));
        assert_eq!(v.len(), 100);
        assert_eq!(count, 1);

        let barrier = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            s.spawn(|| {
                barrier.wait();
                drop(std::hint::black_box(vec![0u8; 1000]));
                barrier.wait();
            });
            // Between the two waits, only the other thread allocates.
            let (count, _) = count_allocations(|| {
                barrier.wait();
                barrier.wait();
            });
            assert_eq!(count, 0, "another thread's allocation was counted");
        });
    });
}

/// Spawning allocates once per task (the task itself: future, output and
/// join state in one block): after a warm-up that grows the run queue and
/// the task set, 10,000 spawns of a small future make exactly 10,000
/// allocations, and joining them makes none.
#[test]
fn spawn_allocates_once_per_task() {
    with_deadline(LIMIT, || {
        let rt = runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let mut handles = Vec::with_capacity(MEASURED);
            // Warm-up: the task slab and the run queue reach their size.
            for i in 0..MEASURED {
                handles.push(runtime::spawn(async move { i }));
            }
            for h in handles.drain(..) {
                h.await.unwrap();
            }
            let (spawned, ()) = count_allocations(|| {
                for i in 0..MEASURED {
                    handles.push(runtime::spawn(async move { i }));
                }
            });
            assert_eq!(
                spawned, MEASURED,
                "{spawned} allocations for {MEASURED} spawns: expected exactly one per task"
            );
            COUNT.set(0);
            COUNTING.set(true);
            let mut sum = 0;
            for h in handles.drain(..) {
                sum += h.await.unwrap();
            }
            COUNTING.set(false);
            assert_eq!(sum, MEASURED * (MEASURED - 1) / 2);
            assert_eq!(COUNT.get(), 0, "joining tasks allocated");
        });
    });
}
