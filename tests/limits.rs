//! The reliability issue's "faults" item: resource limits.
//!
//! 1. **`RLIMIT_MEMLOCK` at 64 KiB, 50 runtimes created at once** on 50
//!    threads (released together by a `Barrier`). Each runtime must either
//!    work — proven by real work in it: a timer, a socketpair write and
//!    read, a spawned task, and its metrics back at rest afterwards — or
//!    fail at `build()` with an `io::Error` of kind `OutOfMemory` whose
//!    message names `RLIMIT_MEMLOCK` and `ulimit -l` and whose source
//!    carries `ENOMEM`. A panic, any other error or a hang fails the test.
//!    Run with the default ring (256 entries) and with a large one
//!    (`Builder::entries(4096)`), each as root and as an unprivileged user.
//!    All the rings that could be built exist at once (a second barrier
//!    holds every thread after its `build()`), so how many fit does not
//!    depend on timing; the child measures one ring's charge first (the
//!    smallest soft limit under which it builds) and requires exactly as
//!    many to work as fit in 64 KiB.
//!
//!    What the kernel does (Linux 6.18, x86_64, 4 KiB pages):
//!    - with `CAP_IPC_LOCK` (root here) ring memory is not charged to
//!      `RLIMIT_MEMLOCK` at all: all 50 work, with 256 or 4096 entries;
//!    - without it (an ordinary user; also root in a container that drops
//!      the capability) it is charged, contrary to the "since 5.12 only
//!      the memory cgroup" rule: a default ring (256 SQEs, 1024 CQEs)
//!      costs 9 pages, so exactly 1 of the 50 works and 49 fail with
//!      `ENOMEM`, which the runtime turns into the `OutOfMemory` message
//!      naming `RLIMIT_MEMLOCK` and `ulimit -l`; a 4096-entry ring costs
//!      133 pages and none works;
//!    - the charge goes to the *real user*, summed over all its processes,
//!      and is released asynchronously, some time after the ring's
//!      descriptor is closed: a ring rebuilt right after one was dropped
//!      can still see the old charge. So the unprivileged children measure
//!      as one fresh uid (`setresuid`, saved uid kept at 0) and build the
//!      50 as another (all uids and gids), both unused by anyone else.
//!      The root children measure a charge of 0 here; where root lacks
//!      `CAP_IPC_LOCK` they only require at most as many as fit.
//!
//! 2. **`RLIMIT_NOFILE` exhausted mid-run**: a runtime runs an echo server
//!    (`net::TcpListener`, an accept loop spawning one echo task per
//!    connection) and clients exchanging checked messages with it. While
//!    their reads and writes are in flight, the free numbers below the
//!    highest open descriptor are filled with `/dev/null` and the soft
//!    limit is lowered to leave exactly 3 free; new connects are made
//!    until one fails with `EMFILE` (each connect and each accept of the
//!    server takes one; 3 is odd, so a connection is left waiting for an
//!    accept). With no descriptor free: connects, `fs::File::open`, `fs::read`,
//!    `UnixStream::pair` and `Runtime::new()` fail with `EMFILE`; the
//!    server's pending accept fails with `EMFILE` and the server goes on;
//!    `spawn_blocking` still runs its closures (thread creation needs no
//!    descriptor; an `open` inside one gets `EMFILE`); timers fire; the
//!    established connections keep exchanging correct data. With exactly
//!    one descriptor free, `Runtime::new()` fails (its eventfd takes the
//!    last one, `io_uring_setup` gets `EMFILE`) and gives that eventfd
//!    back. Once the limit is restored, the server accepts the connections
//!    that waited, new connects, opens and runtimes work, and after
//!    teardown `ops_in_flight` and `tasks_alive` are 0 and `/proc/self/fd`
//!    is exactly what it was before the runtime was created.
//!
//! Both limits are process-wide, so every scenario runs in a child process:
//! the parent test re-executes this test binary (`current_exe()`) to run
//! one child test, with `LIMITS_CHILD` naming the scenario and
//! `LIMITS_PARENT_PID` equal to the child's `getppid()`; child tests are
//! inert without both. The parent requires a successful exit and the
//! marker line the child prints after its last check, and kills a child
//! that does not finish within its bound (a hang is a failure).

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use integration_tests::with_deadline;
use net::{TcpListener, TcpStream, UnixStream};
use runtime::time::{sleep, timeout};
use runtime::Runtime;

/// Environment variable naming the scenario a child process runs.
const CHILD_ENV: &str = "LIMITS_CHILD";
/// Environment variable holding the parent's pid; the child acts only when
/// it equals `getppid()`.
const PARENT_PID_ENV: &str = "LIMITS_PARENT_PID";
/// How long a child process may run before the parent kills it.
const CHILD_LIMIT: Duration = Duration::from_secs(240);
/// The bound of any single wait inside a child.
const WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------

/// Whether this process is the child started for `scenario`.
fn child_is(scenario: &str) -> bool {
    if std::env::var(CHILD_ENV).ok().as_deref() != Some(scenario) {
        return false;
    }
    // SAFETY: getppid has no preconditions and cannot fail.
    let ppid = unsafe { libc::getppid() };
    std::env::var(PARENT_PID_ENV).ok().as_deref() == Some(ppid.to_string().as_str())
}

/// The line a child prints after its last check.
fn marker(scenario: &str) -> String {
    format!("LIMITS-CHILD-OK[{scenario}]")
}

/// Runs `child_test` of this binary in a child process for `scenario`,
/// bounded by [`CHILD_LIMIT`]; requires success and the marker. Returns
/// the child's stdout.
fn run_child(child_test: &str, scenario: &str) -> String {
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(&exe)
        .args(["--exact", child_test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, scenario)
        .env(PARENT_PID_ENV, std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {}: {e}", exe.display()));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = r.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + CHILD_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out.join().expect("stdout reader");
    let stderr = err.join().expect("stderr reader");
    let status = status.unwrap_or_else(|| {
        panic!(
            "child {child_test} did not finish within {CHILD_LIMIT:?} (hung?), killed:\n\
             --- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
        )
    });
    assert!(
        status.success(),
        "child {child_test} failed ({status}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    );
    assert!(
        stdout.contains(&marker(scenario)),
        "child {child_test} exited successfully without printing {:?}:\n\
         --- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        marker(scenario)
    );
    stdout
}

/// The errno of `e`, looking through a wrapped custom error's sources (the
/// runtime's setup errors carry the kernel's error as their source).
fn errno_of(e: &io::Error) -> Option<i32> {
    if let Some(n) = e.raw_os_error() {
        return Some(n);
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = e.get_ref().map(|inner| {
        let inner: &(dyn std::error::Error + 'static) = inner;
        inner
    });
    while let Some(err) = cur {
        if let Some(n) = err
            .downcast_ref::<io::Error>()
            .and_then(io::Error::raw_os_error)
        {
            return Some(n);
        }
        cur = err.source();
    }
    None
}

/// Sets both limits of `resource`.
fn set_rlimit(resource: libc::__rlimit_resource_t, cur: u64, max: u64) {
    let lim = libc::rlimit {
        rlim_cur: cur,
        rlim_max: max,
    };
    // SAFETY: setrlimit reads the live struct it is given.
    let rc = unsafe { libc::setrlimit(resource, &lim) };
    assert_eq!(rc, 0, "setrlimit: {}", io::Error::last_os_error());
}

/// Both limits of `resource`.
fn get_rlimit(resource: libc::__rlimit_resource_t) -> libc::rlimit {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the live struct it is given.
    let rc = unsafe { libc::getrlimit(resource, &mut lim) };
    assert_eq!(rc, 0, "getrlimit: {}", io::Error::last_os_error());
    lim
}

/// Waits, bounded by [`WAIT`], until `cond` holds, sleeping 1 ms between
/// looks; fails naming `what` otherwise.
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "{what}: not reached within {WAIT:?}"
        );
        sleep(Duration::from_millis(1)).await;
    }
}

/// Waits, bounded, until this runtime has no operation in flight and no
/// task alive.
async fn wait_for_rest() {
    wait_until("metrics at rest (no op in flight, no task alive)", || {
        let m = runtime::metrics();
        m.ops_in_flight == 0 && m.tasks_alive == 0
    })
    .await;
}

// ---------------------------------------------------------------------------
// 1. RLIMIT_MEMLOCK
// ---------------------------------------------------------------------------

/// How many runtimes are created at once.
const RUNTIMES: usize = 50;
/// The locked-memory limit of the memlock children.
const MEMLOCK_LIMIT: u64 = 64 * 1024;
/// `CAP_IPC_LOCK` from `<linux/capability.h>`.
const CAP_IPC_LOCK: u32 = 14;
/// What one of the parallel runtimes did.
enum Outcome {
    /// Built, and did the work.
    Worked,
    /// `build()` failed with the memlock error.
    MemlockError,
}

/// Real work in a fresh runtime: a timer, a socketpair write and read, a
/// spawned task; then its metrics must come back to rest.
async fn prove_runtime_works(id: usize) {
    let start = Instant::now();
    sleep(Duration::from_millis(2)).await;
    assert!(
        start.elapsed() >= Duration::from_millis(2),
        "the timer fired early"
    );
    let (a, b) = UnixStream::pair().expect("UnixStream::pair");
    let msg = format!("runtime {id} says hello").into_bytes();
    let (res, msg) = a.write_all(msg).await;
    res.expect("write_all on the socketpair");
    let (res, got) = b.read_exact(Vec::with_capacity(msg.len())).await;
    res.expect("read_exact on the socketpair");
    assert_eq!(got, msg, "the socketpair garbled the message");
    let task = runtime::spawn(async move {
        runtime::yield_now().await;
        sleep(Duration::from_millis(1)).await;
        id * 3
    });
    assert_eq!(task.await.expect("the spawned task"), id * 3);
    drop((a, b));
    wait_for_rest().await;
}

/// Builds one runtime once every thread is ready (`start`), waits until
/// every thread has tried (`built`: all the rings that could be created
/// exist at once, so how many fit does not depend on timing), then proves
/// it works, or checks its error is the memlock one. Panics on anything
/// else.
fn one_runtime(id: usize, entries: Option<u32>, start: &Barrier, built: &Barrier) -> Outcome {
    start.wait();
    let res = build(entries);
    built.wait();
    match res {
        Ok(rt) => {
            rt.block_on(prove_runtime_works(id));
            let m = rt.metrics();
            assert_eq!(m.ops_in_flight, 0, "runtime {id}: ops in flight at rest");
            assert_eq!(m.tasks_alive, 0, "runtime {id}: tasks alive at rest");
            assert_eq!(m.tasks_spawned, 1, "runtime {id}: tasks spawned");
            Outcome::Worked
        }
        Err(e) => {
            let msg = e.to_string();
            assert_eq!(
                e.kind(),
                io::ErrorKind::OutOfMemory,
                "runtime {id}: build failed with an unexpected kind: {e} ({e:?})"
            );
            assert!(
                msg.contains("RLIMIT_MEMLOCK") && msg.contains("ulimit -l"),
                "runtime {id}: the error does not name RLIMIT_MEMLOCK and `ulimit -l`: {msg}"
            );
            assert_eq!(
                errno_of(&e),
                Some(libc::ENOMEM),
                "runtime {id}: the error's source is not ENOMEM: {e:?}"
            );
            // Without insisting, the runtime runs on epoll instead.
            let fallback = match entries {
                Some(n) => Runtime::builder().entries(n).build(),
                None => Runtime::new(),
            }
            .unwrap_or_else(|e| panic!("runtime {id}: no epoll fallback: {e}"));
            assert_eq!(fallback.features().driver, runtime::DriverKind::Epoll);
            fallback.block_on(prove_runtime_works(id));
            Outcome::MemlockError
        }
    }
}

/// A runtime with `entries` ring entries, or the default, insisting on
/// io_uring (the default would run on epoll where the ring's memory is
/// refused, which `one_runtime` checks too).
fn build(entries: Option<u32>) -> io::Result<Runtime> {
    let b = Runtime::builder().driver(runtime::DriverKind::IoUring);
    match entries {
        Some(n) => b.entries(n).build(),
        None => b.build(),
    }
}

/// The most pages of locked memory [`measure_charge`] tries.
const MAX_MEASURED_PAGES: u64 = 1024;

/// How many pages of `RLIMIT_MEMLOCK` one ring of `entries` is charged in
/// this process: the smallest soft limit under which it can be built (0:
/// not charged at all). Leaves the soft limit at the hard one.
fn measure_charge(entries: Option<u32>) -> u64 {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    let hard = get_rlimit(libc::RLIMIT_MEMLOCK).rlim_max;
    let mut found = None;
    for pages in 0..=MAX_MEASURED_PAGES.min(hard / page) {
        set_rlimit(libc::RLIMIT_MEMLOCK, pages * page, hard);
        match build(entries) {
            Ok(rt) => {
                drop(rt);
                found = Some(pages);
                break;
            }
            Err(e) if errno_of(&e) == Some(libc::ENOMEM) => {}
            Err(e) => panic!("building a ring to measure its charge: {e}"),
        }
    }
    set_rlimit(libc::RLIMIT_MEMLOCK, hard, hard);
    found.unwrap_or_else(|| panic!("no ring of {entries:?} entries fits in {hard} bytes"))
}

/// Whether the calling thread has `CAP_IPC_LOCK` in its effective set.
fn has_ipc_lock() -> bool {
    let status = std::fs::read_to_string("/proc/thread-self/status").expect("status");
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).expect("CapEff is hex"))
        .expect("CapEff line");
    eff & (1 << CAP_IPC_LOCK) != 0
}

/// `setresuid(2)`, applied by glibc to every thread of the process.
fn set_uids(real: u32, effective: u32, saved: u32) {
    // SAFETY: a plain syscall on integers.
    let rc = unsafe { libc::setresuid(real, effective, saved) };
    assert_eq!(rc, 0, "setresuid: {}", io::Error::last_os_error());
}

/// A uid no other process uses: `base` plus this process's pid (pids are
/// below 2^22). The kernel charges ring memory to the real user, summed
/// over all its processes, so each user of these tests must be new.
fn fresh_uid(base: u32) -> u32 {
    base + std::process::id()
}

/// Switches every thread of this process to the fresh user `id` (uid and
/// gid, no supplementary groups), which also clears every capability.
fn become_user(id: u32) {
    // SAFETY: plain syscalls on integers; glibc applies them to every
    // thread of the process. setgroups reads no memory with a count of 0.
    let rc = unsafe { libc::setresgid(id, id, id) };
    assert_eq!(rc, 0, "setresgid: {}", io::Error::last_os_error());
    // SAFETY: as above.
    let rc = unsafe { libc::setgroups(0, std::ptr::null()) };
    assert_eq!(rc, 0, "setgroups: {}", io::Error::last_os_error());
    set_uids(id, id, id);
    assert!(!has_ipc_lock(), "CAP_IPC_LOCK kept after setresuid");
}

/// Body of a memlock child: measures the charge of one ring, lowers
/// `RLIMIT_MEMLOCK` to 64 KiB (soft and hard), builds [`RUNTIMES`] runtimes
/// at once, checks each one's outcome and how many worked; prints the
/// counts after the marker.
///
/// With `unprivileged`, the measuring is done as one fresh user (real and
/// effective uid; the saved uid stays 0 to come back) and the runtimes are
/// built as another (all uids and gids): neither has `CAP_IPC_LOCK`, and
/// the second has nothing charged yet, as the measuring ring's charge is
/// only released some time after it is dropped.
fn memlock_child(scenario: &str, entries: Option<u32>, unprivileged: bool) {
    if !child_is(scenario) {
        return;
    }
    if unprivileged {
        set_uids(fresh_uid(0x1000_0000), fresh_uid(0x1000_0000), 0);
        assert!(!has_ipc_lock(), "CAP_IPC_LOCK kept after setresuid");
    }
    let charge = measure_charge(entries);
    if unprivileged {
        set_uids(0, 0, 0);
    }
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    let fit = match charge {
        0 => RUNTIMES,
        pages => ((MEMLOCK_LIMIT / page / pages) as usize).min(RUNTIMES),
    };
    set_rlimit(libc::RLIMIT_MEMLOCK, MEMLOCK_LIMIT, MEMLOCK_LIMIT);
    if unprivileged {
        become_user(fresh_uid(0x2000_0000));
    }
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let ipc_lock = has_ipc_lock();
    let (worked, failed) = with_deadline(Duration::from_secs(120), move || {
        let start = Arc::new(Barrier::new(RUNTIMES));
        let built = Arc::new(Barrier::new(RUNTIMES));
        let threads: Vec<_> = (0..RUNTIMES)
            .map(|id| {
                let (start, built) = (start.clone(), built.clone());
                std::thread::Builder::new()
                    .name(format!("memlock-{id}"))
                    .spawn(move || one_runtime(id, entries, &start, &built))
                    .expect("spawning a runtime thread")
            })
            .collect();
        let mut worked = 0;
        let mut failed = 0;
        let mut panics = Vec::new();
        for (id, t) in threads.into_iter().enumerate() {
            match t.join() {
                Ok(Outcome::Worked) => worked += 1,
                Ok(Outcome::MemlockError) => failed += 1,
                Err(p) => {
                    let msg = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    panics.push(format!("runtime {id}: {msg}"));
                }
            }
        }
        assert!(
            panics.is_empty(),
            "runtimes failed wrongly:\n{}",
            panics.join("\n")
        );
        (worked, failed)
    });
    // Every ring that could be built existed at once (the `built`
    // barrier), so at most `fit` worked. Exactly `fit` unless locked memory
    // of this user was still charged from before: the kernel releases a
    // ring's charge asynchronously, after the ring's descriptor is closed,
    // and charges it to the user, not the process. A fresh user has
    // nothing charged; with no charge at all, nothing can be left over.
    if unprivileged || charge == 0 {
        assert_eq!(
            worked, fit,
            "{scenario}: {worked} runtimes worked, {fit} fit \
             (CAP_IPC_LOCK {ipc_lock}, one ring charged {charge} pages, limit {MEMLOCK_LIMIT} bytes)"
        );
    } else {
        assert!(
            worked <= fit,
            "{scenario}: {worked} runtimes worked, at most {fit} fit \
             (CAP_IPC_LOCK {ipc_lock}, one ring charged {charge} pages, limit {MEMLOCK_LIMIT} bytes)"
        );
    }
    println!(
        "\n{} worked={worked} failed={failed} ipc_lock={ipc_lock} ring_pages={charge} uid={uid}",
        marker(scenario)
    );
}

/// Runs a memlock child and returns (worked, failed), also printed.
fn memlock_parent(child_test: &str, scenario: &str) -> (usize, usize) {
    let stdout = run_child(child_test, scenario);
    let line = stdout
        .lines()
        .find(|l| l.contains(&marker(scenario)))
        .expect("marker line");
    let field = |key: &str| -> String {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {line:?}"))
            .to_string()
    };
    let count = |key: &str| -> usize {
        field(key)
            .parse()
            .unwrap_or_else(|_| panic!("{key} is not a count in {line:?}"))
    };
    let (worked, failed) = (count("worked="), count("failed="));
    assert_eq!(worked + failed, RUNTIMES, "{line}");
    eprintln!(
        "{scenario}: {worked} of {RUNTIMES} runtimes worked, {failed} failed with the memlock \
         error (uid {}, CAP_IPC_LOCK: {}, one ring charged {} pages of RLIMIT_MEMLOCK)",
        field("uid="),
        field("ipc_lock="),
        field("ring_pages=")
    );
    (worked, failed)
}

#[test]
fn child_memlock_default() {
    memlock_child("memlock-default", None, false);
}

#[test]
fn child_memlock_entries_4096() {
    memlock_child("memlock-4096", Some(4096), false);
}

#[test]
fn child_memlock_default_unprivileged() {
    memlock_child("memlock-default-unprivileged", None, true);
}

#[test]
fn child_memlock_entries_4096_unprivileged() {
    memlock_child("memlock-4096-unprivileged", Some(4096), true);
}

/// 50 default runtimes at once under a 64 KiB memlock limit, as root.
#[test]
fn memlock_64k_50_runtimes() {
    memlock_parent("child_memlock_default", "memlock-default");
}

/// 50 runtimes with 4096-entry rings at once under a 64 KiB memlock limit,
/// as root.
#[test]
fn memlock_64k_50_runtimes_entries_4096() {
    memlock_parent("child_memlock_entries_4096", "memlock-4096");
}

/// 50 default runtimes at once under a 64 KiB memlock limit, as an
/// unprivileged user: the limit is really hit, and one ring fits.
#[test]
fn memlock_64k_50_runtimes_unprivileged() {
    let (worked, failed) = memlock_parent(
        "child_memlock_default_unprivileged",
        "memlock-default-unprivileged",
    );
    assert!(
        worked >= 1 && failed >= 1,
        "worked {worked}, failed {failed}"
    );
}

/// 50 runtimes with 4096-entry rings at once under a 64 KiB memlock limit,
/// as an unprivileged user: no such ring fits.
#[test]
fn memlock_64k_50_runtimes_entries_4096_unprivileged() {
    let (worked, failed) = memlock_parent(
        "child_memlock_entries_4096_unprivileged",
        "memlock-4096-unprivileged",
    );
    assert_eq!((worked, failed), (0, RUNTIMES));
}

// ---------------------------------------------------------------------------
// 2. RLIMIT_NOFILE exhausted mid-run
// ---------------------------------------------------------------------------

/// Established client connections kept echoing through the whole scenario.
const CLIENTS: usize = 4;
/// Descriptors left free when the limit is lowered. Odd: connects and the
/// server's accepts take one each, so when the last is gone at least one
/// connection is still waiting for an accept, which must then fail.
const FEW: u64 = 3;
const _: () = assert!(FEW % 2 == 1);
/// Round trips each client must complete in each phase.
const ROUND_TRIPS: u64 = 20;

/// The open descriptors of this process and what they point to. Needs one
/// free descriptor (for the directory).
fn fd_snapshot() -> BTreeMap<i32, String> {
    let names: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    // The directory's own descriptor is closed by now: its link is gone.
    names
        .into_iter()
        .filter_map(|fd| {
            let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
            Some((fd, target.display().to_string()))
        })
        .collect()
}

/// Whether `e` is "too many open files" (`EMFILE`), also when wrapped.
fn is_emfile(e: &io::Error) -> bool {
    errno_of(e) == Some(libc::EMFILE)
}

/// What the server and the clients of the scenario record.
#[derive(Default)]
struct Stats {
    /// Connections the server accepted.
    accepted: std::cell::Cell<usize>,
    /// Accepts that failed with `EMFILE`.
    accept_emfile: std::cell::Cell<usize>,
    /// Echo tasks still running.
    echo_alive: std::cell::Cell<usize>,
    /// Anything unexpected the server saw (checked at the end: a spawned
    /// task's panic would otherwise only reach its handle).
    unexpected: std::cell::RefCell<Vec<String>>,
}

/// The echo server: an accept loop spawning one echo task per connection,
/// retrying after `EMFILE` (the listener backs off by itself).
async fn serve(listener: TcpListener, stats: std::rc::Rc<Stats>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                stats.accepted.set(stats.accepted.get() + 1);
                stats.echo_alive.set(stats.echo_alive.get() + 1);
                let stats = stats.clone();
                runtime::spawn(async move {
                    if let Err(e) = echo(&stream).await {
                        stats.unexpected.borrow_mut().push(format!("echo: {e}"));
                    }
                    stats.echo_alive.set(stats.echo_alive.get() - 1);
                });
            }
            Err(e) if is_emfile(&e) => stats.accept_emfile.set(stats.accept_emfile.get() + 1),
            Err(e) => stats.unexpected.borrow_mut().push(format!("accept: {e}")),
        }
    }
}

/// Echoes until the peer closes.
async fn echo(stream: &TcpStream) -> io::Result<()> {
    let mut buf = Vec::with_capacity(4096);
    loop {
        let (res, b) = stream.read(buf).await;
        if res? == 0 {
            return Ok(());
        }
        let (res, b) = stream.write_all(b).await;
        res?;
        buf = b;
        buf.clear();
    }
}

/// The message of client `id` for round trip `seq`: 1 to 3000 bytes of a
/// pattern only this round trip has.
fn message(id: usize, seq: u64) -> Vec<u8> {
    let len = 1 + (seq as usize * 977 + id * 131) % 3000;
    (0..len)
        .map(|i| (i as u64 ^ seq.wrapping_mul(31) ^ (id as u64 * 7)) as u8)
        .collect()
}

/// One echo round trip of `id`'s message `seq`, checked.
async fn round_trip(stream: &TcpStream, id: usize, seq: u64) {
    let msg = message(id, seq);
    let (res, msg) = stream.write_all(msg).await;
    res.unwrap_or_else(|e| panic!("client {id}: write of round trip {seq}: {e}"));
    let (res, got) = stream.read_exact(Vec::with_capacity(msg.len())).await;
    res.unwrap_or_else(|e| panic!("client {id}: read of round trip {seq}: {e}"));
    assert!(
        got == msg,
        "client {id}: round trip {seq} came back garbled"
    );
}

/// A client exchanging checked messages until `stop`; counts round trips.
async fn client(
    stream: TcpStream,
    id: usize,
    stop: std::rc::Rc<std::cell::Cell<bool>>,
    done: std::rc::Rc<std::cell::Cell<u64>>,
) -> u64 {
    let mut seq = 0;
    while !stop.get() {
        round_trip(&stream, id, seq).await;
        seq += 1;
        done.set(seq);
    }
    seq
}

/// Runs `f` on a fresh thread (so it builds its own runtime) and returns
/// its result, bounded by [`WAIT`].
fn on_thread<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    with_deadline(WAIT, f)
}

/// `Runtime::new()` on another thread; its error if it fails.
fn new_runtime_elsewhere() -> Option<io::Error> {
    on_thread(|| match Runtime::new() {
        Ok(rt) => {
            let v = rt.block_on(async {
                sleep(Duration::from_millis(1)).await;
                runtime::spawn(async { 5 }).await.expect("task")
            });
            assert_eq!(v, 5);
            None
        }
        Err(e) => Some(e),
    })
}

/// Expects `res` to be an `EMFILE` error.
fn expect_emfile<T>(what: &str, res: io::Result<T>) {
    match res {
        Ok(_) => panic!("{what}: succeeded with no descriptor free"),
        Err(e) => assert!(is_emfile(&e), "{what}: expected EMFILE, got {e} ({e:?})"),
    }
}

/// Awaits `fut`, bounded by [`WAIT`].
async fn bounded<F: Future>(what: &str, fut: F) -> F::Output {
    timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: did not finish within {WAIT:?} (hung?)"))
}

/// The scenario, on a runtime in the child process; see the module doc.
async fn nofile_scenario() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    let stats = std::rc::Rc::new(Stats::default());
    let server = runtime::spawn(serve(listener, stats.clone()));

    // Phase A: clients echoing normally.
    let stop = std::rc::Rc::new(std::cell::Cell::new(false));
    let mut clients = Vec::new();
    let mut done = Vec::new();
    for id in 0..CLIENTS {
        let stream = bounded("connect", TcpStream::connect(addr))
            .await
            .expect("connect");
        let count = std::rc::Rc::new(std::cell::Cell::new(0));
        done.push(count.clone());
        clients.push(runtime::spawn(client(stream, id, stop.clone(), count)));
    }
    let progress = |done: &[std::rc::Rc<std::cell::Cell<u64>>]| -> Vec<u64> {
        done.iter().map(|c| c.get()).collect()
    };
    let all_advanced = |from: &[u64], done: &[std::rc::Rc<std::cell::Cell<u64>>]| {
        from.iter()
            .zip(done)
            .all(|(f, c)| c.get() >= f + ROUND_TRIPS)
    };
    let start = progress(&done);
    wait_until("clients' first round trips", || {
        assert!(!clients.iter().any(|c| c.is_finished()), "a client ended");
        all_advanced(&start, &done)
    })
    .await;

    // Phase B: lower the limit while the clients' reads and writes are in
    // flight.
    let saved = get_rlimit(libc::RLIMIT_NOFILE);
    // One descriptor held back, to free exactly one later.
    let mut reserve = Some(std::fs::File::open("/dev/null").expect("/dev/null"));
    // Fill the free numbers below the highest open one, so that exactly
    // FEW are free under the new limit.
    let highest = *fd_snapshot().keys().max().expect("some descriptor") as u64;
    let mut hole_fillers = Vec::new();
    loop {
        let f = std::fs::File::open("/dev/null").expect("/dev/null");
        if f.as_raw_fd() as u64 > highest {
            break;
        }
        hole_fillers.push(f);
    }
    let free = FEW;
    set_rlimit(libc::RLIMIT_NOFILE, highest + 1 + free, saved.rlim_max);
    // New connects until one fails.
    let mut extra = Vec::new();
    let err = loop {
        match bounded("connect near the limit", TcpStream::connect(addr)).await {
            Ok(s) => extra.push(s),
            Err(e) => break e,
        }
        assert!(
            extra.len() as u64 <= free,
            "{} connects succeeded with {free} descriptors free",
            extra.len()
        );
    };
    assert!(is_emfile(&err), "connect at the limit: {err} ({err:?})");
    assert!(!extra.is_empty(), "no connect succeeded near the limit");
    // Nothing is left (no descriptor was closed meanwhile).
    expect_emfile("open /dev/null", std::fs::File::open("/dev/null"));
    wait_until("the server's accept failing with EMFILE", || {
        stats.accept_emfile.get() >= 1
    })
    .await;
    let accepted_at_limit = stats.accepted.get();
    assert!(
        accepted_at_limit < CLIENTS + extra.len(),
        "every connection was accepted with no descriptor free"
    );

    // Out of descriptors: whatever needs one fails cleanly.
    let exe = std::env::current_exe().expect("current_exe");
    expect_emfile(
        "TcpStream::connect",
        bounded("connect", TcpStream::connect(addr)).await,
    );
    expect_emfile(
        "fs::File::open",
        bounded("open", fs::File::open(&exe)).await,
    );
    expect_emfile("fs::read", bounded("fs::read", fs::read(&exe)).await);
    expect_emfile("UnixStream::pair", UnixStream::pair());
    let e = new_runtime_elsewhere().expect("Runtime::new() with no descriptor free");
    assert!(is_emfile(&e), "Runtime::new(): {e} ({e:?})");
    // spawn_blocking starts threads, which need no descriptor.
    let v = bounded("spawn_blocking", runtime::spawn_blocking(|| 6 * 7))
        .await
        .expect("spawn_blocking with no descriptor free");
    assert_eq!(v, 42);
    let opened = bounded(
        "spawn_blocking open",
        runtime::spawn_blocking(|| std::fs::File::open("/dev/null").map(drop)),
    )
    .await
    .expect("spawn_blocking");
    expect_emfile("std open in spawn_blocking", opened);
    // Timers.
    let t0 = Instant::now();
    sleep(Duration::from_millis(5)).await;
    assert!(t0.elapsed() >= Duration::from_millis(5), "sleep woke early");
    assert!(
        timeout(Duration::from_millis(5), std::future::pending::<()>())
            .await
            .is_err(),
        "a timeout of a pending future did not elapse"
    );
    // With exactly one descriptor free, a new runtime gets its eventfd but
    // not its ring, and must give the eventfd back. No await in between:
    // the server's retried accept (submitted only by this thread) cannot
    // take the free descriptor meanwhile.
    drop(reserve.take());
    let e = new_runtime_elsewhere().expect("Runtime::new() with one descriptor free");
    assert!(is_emfile(&e), "Runtime::new() with one free: {e} ({e:?})");
    reserve = Some(
        std::fs::File::open("/dev/null")
            .expect("the failed Runtime::new() kept the descriptor it took (leak)"),
    );
    // The established connections kept working all along.
    let at_limit = progress(&done);
    wait_until("round trips with no descriptor free", || {
        assert!(!clients.iter().any(|c| c.is_finished()), "a client ended");
        all_advanced(&at_limit, &done)
    })
    .await;
    assert_eq!(
        stats.accepted.get(),
        accepted_at_limit,
        "accepted at the limit"
    );
    assert!(
        stats.unexpected.borrow().is_empty(),
        "server: {:?}",
        stats.unexpected.borrow()
    );

    // Phase C: the limit restored.
    drop(reserve);
    drop(hole_fillers);
    set_rlimit(libc::RLIMIT_NOFILE, saved.rlim_cur, saved.rlim_max);
    wait_until("the server accepting the connections that waited", || {
        stats.accepted.get() == CLIENTS + extra.len()
    })
    .await;
    for (i, s) in extra.iter().enumerate() {
        bounded("echo on a waiting connection", round_trip(s, 100 + i, 0)).await;
    }
    let fresh = bounded("connect after recovery", TcpStream::connect(addr))
        .await
        .expect("connect after recovery");
    bounded("echo on a new connection", round_trip(&fresh, 200, 0)).await;
    let f = bounded("open after recovery", fs::File::open(&exe))
        .await
        .expect("fs::File::open after recovery");
    f.close().await.expect("close");
    let (a, b) = UnixStream::pair().expect("UnixStream::pair after recovery");
    drop((a, b));
    assert!(
        new_runtime_elsewhere().is_none(),
        "Runtime::new() failed after recovery"
    );
    bounded(
        "spawn_blocking open after recovery",
        runtime::spawn_blocking(|| std::fs::File::open("/dev/null").map(drop)),
    )
    .await
    .expect("spawn_blocking")
    .expect("std open after recovery");
    let recovered = progress(&done);
    wait_until("round trips after recovery", || {
        all_advanced(&recovered, &done)
    })
    .await;

    // Phase D: teardown.
    stop.set(true);
    for (id, c) in clients.into_iter().enumerate() {
        let n = bounded("client end", c).await.expect("client task");
        assert!(n >= 3 * ROUND_TRIPS, "client {id}: only {n} round trips");
    }
    let extra_count = extra.len();
    drop(extra);
    drop(fresh);
    wait_until("echo tasks ending", || stats.echo_alive.get() == 0).await;
    server.abort();
    let res = bounded("server end", server).await;
    assert!(
        matches!(&res, Err(e) if e.is_cancelled()),
        "the server task ended otherwise than by abort"
    );
    assert!(
        stats.unexpected.borrow().is_empty(),
        "server: {:?}",
        stats.unexpected.borrow()
    );
    wait_for_rest().await;
    println!(
        "nofile: {} accepts, {} EMFILE accept errors, {} connects near the limit \
         ({free} descriptors were free)",
        stats.accepted.get(),
        stats.accept_emfile.get(),
        extra_count
    );
}

/// Body of the nofile child: the scenario on a fresh runtime, then the
/// descriptor table must be what it was before.
#[test]
fn child_nofile_exhausted_mid_run() {
    const SCENARIO: &str = "nofile";
    if !child_is(SCENARIO) {
        return;
    }
    let before = fd_snapshot();
    with_deadline(Duration::from_secs(120), || {
        let rt = Runtime::new().expect("Runtime::new");
        rt.block_on(nofile_scenario());
        let m = rt.metrics();
        assert_eq!(m.ops_in_flight, 0, "ops in flight at rest");
        assert_eq!(m.tasks_alive, 0, "tasks alive at rest");
    });
    let after = fd_snapshot();
    assert_eq!(after, before, "descriptors before and after the scenario");
    println!("\n{}", marker(SCENARIO));
}

/// `RLIMIT_NOFILE` exhausted while a server and clients run; see the
/// module doc.
#[test]
fn nofile_exhausted_mid_run() {
    let stdout = run_child("child_nofile_exhausted_mid_run", "nofile");
    if let Some(at) = stdout.find("nofile:") {
        eprintln!("{}", stdout[at..].lines().next().unwrap_or_default());
    }
}
