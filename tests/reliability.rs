//! Faults around the ring: signals interrupting `io_uring_enter`, and the
//! runtime's counters that show nothing is left behind.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use integration_tests::with_deadline;
use runtime::op::{Operation, SharedFd};
use runtime::time::sleep;

const LIMIT: Duration = Duration::from_secs(120);

/// Signal handler invocations on the runtime thread.
static HITS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_signal(_: libc::c_int) {
    HITS.fetch_add(1, Ordering::Relaxed);
}

/// Installs `on_signal` for SIGUSR1 *without* `SA_RESTART`, so a signal that
/// lands while the runtime waits in `io_uring_enter` makes it fail with
/// `EINTR`.
fn install_handler() {
    // SAFETY: a zeroed sigaction is valid; the handler only touches an
    // atomic, which is async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
        action.sa_flags = 0;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()),
            0
        );
    }
}

fn pipe() -> (SharedFd, std::os::fd::OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the array with two new descriptors we own.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both descriptors are fresh and owned by us from here on.
    unsafe {
        use std::os::fd::FromRawFd;
        (
            SharedFd::new(std::os::fd::OwnedFd::from_raw_fd(fds[0])),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    }
}

/// Reads from `fd` into the spare capacity of `buf`.
async fn read(fd: &SharedFd, buf: Vec<u8>) -> (std::io::Result<usize>, Vec<u8>) {
    // The typed read (IORING_OP_READ at the current position; a read(2)
    // on the blocking pool on the epoll driver).
    let (res, buf) = runtime::op::Read::new(fd, buf, u64::MAX).submit().await;
    (res, buf)
}

/// How many handled signals make the storm strong enough.
const ENOUGH: usize = 3000;

/// Thousands of signals (no `SA_RESTART`) are delivered to the runtime's
/// thread while it waits in `io_uring_enter` for timers, pipe reads and
/// blocking-pool completions, until 3,000 have been handled there: every
/// timer fires (a lost one would hang the test), every byte the writer
/// wrote arrives intact and in order, every blocking job's result comes
/// back, and no error or panic surfaces (an interrupted wait is retried,
/// never reported).
#[test]
fn signals_interrupting_the_ring_lose_nothing() {
    with_deadline(LIMIT, || {
        install_handler();
        let (tid_tx, tid_rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let (reader, writer) = pipe();
        let hits_before = HITS.load(Ordering::Relaxed);
        let enough = move || HITS.load(Ordering::Relaxed) - hits_before >= ENOUGH;

        // The signal storm: tgkill to the runtime thread until told to stop.
        let storm = {
            let (stop, sent) = (stop.clone(), sent.clone());
            std::thread::spawn(move || {
                let tid: libc::pid_t = tid_rx.recv().unwrap();
                // SAFETY: getpid has no preconditions.
                let pid = unsafe { libc::getpid() };
                while !stop.load(Ordering::Relaxed) {
                    // SAFETY: sends SIGUSR1, whose handler is installed, to
                    // a thread of this process.
                    unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, libc::SIGUSR1) };
                    sent.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_micros(50));
                }
            })
        };
        // A slow writer: the pipe's bytes trickle in while signals land,
        // until the storm is over; then EOF. Returns how many it wrote.
        let trickle = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                use std::io::Write;
                let mut w = std::fs::File::from(writer);
                let mut written = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let chunk: Vec<u8> =
                        (written..written + 256).map(|k| (k % 251) as u8).collect();
                    w.write_all(&chunk).unwrap();
                    written += 256;
                    std::thread::sleep(Duration::from_micros(300));
                }
                written
            })
        };

        let rt = runtime::Runtime::new().unwrap();
        let (fired, got, blocking_ok) = rt.block_on(async {
            // SAFETY: gettid has no preconditions.
            tid_tx.send(unsafe { libc::gettid() }).unwrap();
            let fired = std::rc::Rc::new(std::cell::Cell::new(0usize));
            let timers: Vec<_> = (0..200u64)
                .map(|i| {
                    let fired = fired.clone();
                    runtime::spawn(async move {
                        let mut round = 0u64;
                        while !enough() {
                            sleep(Duration::from_millis(1 + (i * 7 + round * 3) % 20)).await;
                            fired.set(fired.get() + 1);
                            round += 1;
                        }
                    })
                })
                .collect();
            let blocking = runtime::spawn(async move {
                let mut i = 0u64;
                while !enough() {
                    let got = runtime::spawn_blocking(move || {
                        std::thread::sleep(Duration::from_micros(200));
                        i * 3
                    })
                    .await
                    .unwrap();
                    assert_eq!(got, i * 3, "a blocking result was wrong");
                    i += 1;
                }
                i > 0
            });
            let stopper = {
                let stop = stop.clone();
                runtime::spawn(async move {
                    while !enough() {
                        sleep(Duration::from_millis(5)).await;
                    }
                    stop.store(true, Ordering::Relaxed);
                })
            };
            let mut got = Vec::new();
            loop {
                let buf = Vec::with_capacity(4096);
                let (res, buf) = read(&reader, buf).await;
                let n = res.expect("a read failed under signals");
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf);
            }
            for t in timers {
                t.await.unwrap();
            }
            stopper.await.unwrap();
            (fired.get(), got, blocking.await.unwrap())
        });
        stop.store(true, Ordering::Relaxed);
        storm.join().unwrap();
        let written = trickle.join().unwrap();
        drop(rt);

        assert!(fired >= 200, "timers did not run");
        assert!(blocking_ok, "no blocking job ran");
        assert_eq!(got.len(), written, "bytes were lost");
        for (i, b) in got.iter().enumerate() {
            assert_eq!(*b, (i % 251) as u8, "byte {i} is wrong");
        }
        let hits = HITS.load(Ordering::Relaxed) - hits_before;
        let sent = sent.load(Ordering::Relaxed);
        assert!(
            hits >= ENOUGH,
            "only {hits} signals were handled ({sent} sent)"
        );
        println!(
            "signals sent {sent}, handled on the runtime thread {hits}; \
             {fired} timers fired, {written} bytes read"
        );
    });
}

/// The runtime's counters move as work is done and come back to rest:
/// after 1,000 tasks each doing a no-op op and a short sleep, no op is in
/// flight and no task alive; submitted ops and reaped CQEs counted at least
/// the work done.
#[test]
fn metrics_count_work_and_return_to_rest() {
    with_deadline(LIMIT, || {
        let rt = runtime::Runtime::new().unwrap();
        let before = rt.metrics();
        assert_eq!(before.tasks_alive, 0);
        if rt.features().driver == runtime::DriverKind::IoUring {
            assert_ne!(before.setup_flags, 0, "no setup flag was accepted");
        }
        rt.block_on(async {
            let handles: Vec<_> = (0..1000)
                .map(|_| {
                    runtime::spawn(async {
                        runtime::op::Nop.submit().await.unwrap();
                        sleep(Duration::from_millis(1)).await;
                    })
                })
                .collect();
            let during = runtime::metrics();
            assert_eq!(during.tasks_alive, 1000);
            for h in handles {
                h.await.unwrap();
            }
        });
        let after = rt.metrics();
        assert_eq!(after.tasks_alive, 0);
        assert_eq!(after.ops_in_flight, 0);
        assert_eq!(after.tasks_spawned - before.tasks_spawned, 1000);
        assert!(after.ops_submitted - before.ops_submitted >= 1000);
        assert!(after.cqes_reaped - before.cqes_reaped >= 1000);
    });
}
