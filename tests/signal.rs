//! Integration tests of `runtime::signal`: `signal`, `ctrl_c` and
//! `Signal::recv`.
//!
//! A signal handler belongs to the whole process, and once installed for
//! SIGTERM or SIGINT it stays; so every test that delivers a signal runs in
//! a child process: this test binary itself, re-run with `--exact <test>`
//! and the environment variable `SIGNAL_TEST_CHILD=<test>`, which makes the
//! test play the child's part. The child prints lines starting with `@` to
//! say where it is; the parent waits for them (bounded), delivers signals
//! with kill(2), and checks that the child exits with status 0 (a child
//! whose assertion fails exits with libtest's 101 and its stderr is shown).
//! Some children deliver signals to themselves, with `kill` to the process
//! or `tgkill` to one chosen thread: the runtime's, a plain one, the
//! dispatcher.
//!
//! No test asserts that something was fast: waits for a delivery are
//! bounded by generous timeouts that only a lost signal reaches, and the
//! one "nothing happens" check (no spurious wake-up) only says that nothing
//! happened within a short while.

use std::future::{poll_fn, Future};
use std::io::{BufRead, BufReader, Read};
use std::pin::pin;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::task::Poll;
use std::thread;
use std::time::Duration;

use integration_tests::{park_on, with_deadline};
use runtime::signal::{ctrl_c, signal, Signal};
use runtime::time::timeout;

/// Generous limit for a whole test, child included.
const LIMIT: Duration = Duration::from_secs(120);

/// How long a child waits for a delivery before declaring it lost.
const DELIVERY: Duration = Duration::from_secs(30);

/// The environment variable that makes a test play the child's part.
const ROLE: &str = "SIGNAL_TEST_CHILD";

/// Whether this process is the child for test `name`.
fn is_child(name: &str) -> bool {
    std::env::var(ROLE).as_deref() == Ok(name)
}

/// Says where the child is, for the parent.
fn say(what: &str) {
    println!("@{what}");
}

/// The calling thread's kernel id.
fn gettid() -> libc::pid_t {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as libc::pid_t }
}

/// Sends `sig` to the thread `tid` of this process.
fn tgkill(tid: libc::pid_t, sig: i32) {
    // SAFETY: plain syscall on this process's own thread; checked.
    let rc = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, sig) };
    assert_eq!(rc, 0, "tgkill: {}", std::io::Error::last_os_error());
}

/// Sends `sig` to this process (the kernel picks the thread).
fn kill_self(sig: i32) {
    // SAFETY: plain syscall; checked.
    let rc = unsafe { libc::kill(libc::getpid(), sig) };
    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
}

/// The kernel id of this process's thread named `name`. (A thread names
/// itself once it runs, so a new one may take a moment to show up.)
fn thread_named(name: &str) -> libc::pid_t {
    for _ in 0..1000 {
        for entry in std::fs::read_dir("/proc/self/task").unwrap() {
            let path = entry.unwrap().path();
            let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            if comm.trim_end() == name {
                return path.file_name().unwrap().to_str().unwrap().parse().unwrap();
            }
        }
        thread::sleep(Duration::from_millis(10));
    }
    panic!("no thread named {name}");
}

/// Waits for `sig`'s next delivery on the current runtime, failing if none
/// comes within [`DELIVERY`].
async fn expect_delivery(sig: &mut Signal, what: &str) {
    match timeout(DELIVERY, sig.recv()).await {
        Ok(Some(())) => {}
        Ok(None) => panic!("{what}: recv returned None"),
        Err(_) => panic!("{what}: no delivery within {DELIVERY:?} (lost?)"),
    }
}

/// A child process running one test of this binary in the child's part.
struct Child {
    proc: std::process::Child,
    /// The child's `@` lines, without the `@`.
    lines: mpsc::Receiver<String>,
    stderr: Option<thread::JoinHandle<String>>,
}

impl Child {
    /// Starts the child for test `name`.
    fn spawn(name: &str) -> Child {
        let exe = std::env::current_exe().expect("current_exe");
        let mut proc = Command::new(exe)
            .args([name, "--exact", "--nocapture", "--test-threads=1", "-q"])
            .env(ROLE, name)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start the child");
        let stdout = proc.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some(what) = line.strip_prefix('@') {
                    let _ = tx.send(what.to_string());
                }
            }
        });
        let mut err = proc.stderr.take().unwrap();
        let stderr = thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Child {
            proc,
            lines,
            stderr: Some(stderr),
        }
    }

    /// Waits until the child says `what`.
    fn expect(&mut self, what: &str) {
        match self.lines.recv_timeout(LIMIT) {
            Ok(line) if line == what => {}
            Ok(line) => panic!("child said {line:?}, expected {what:?}"),
            Err(_) => {
                let status = self.proc.try_wait().ok().flatten();
                let stderr = self.stop();
                panic!("child did not say {what:?} (exit: {status:?}); stderr:\n{stderr}")
            }
        }
    }

    /// Delivers `sig` to the child process.
    fn kill(&self, sig: i32) {
        let pid = self.proc.id() as libc::pid_t;
        // SAFETY: plain syscall on our own child, which is not yet reaped
        // (so its pid cannot have been reused); checked.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// Kills the child if it still runs, reaps it, and returns its stderr.
    fn stop(&mut self) -> String {
        let _ = self.proc.kill();
        let _ = self.proc.wait();
        self.stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default()
    }

    /// Waits for the child to exit and checks that it succeeded.
    fn finish(mut self) {
        let status = self.proc.wait().expect("wait");
        let stderr = self.stderr.take().unwrap().join().unwrap_or_default();
        assert!(
            status.success(),
            "child failed: {status}; stderr:\n{stderr}"
        );
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.stderr.is_some() {
            self.stop();
        }
    }
}

/// A `Signal` must be usable from any thread and runtime.
#[test]
fn signal_is_send_and_sync() {
    fn check<T: Send + Sync + 'static>() {}
    check::<Signal>();
    fn future_is_send<F: Future + Send>(_: &F) {}
    let mut never: Option<Signal> = None;
    if let Some(sig) = never.as_mut() {
        future_is_send(&sig.recv());
    }
}

/// Numbers that are not signals, and signals that must not be caught, are
/// refused with `InvalidInput` (and do not panic or install anything).
#[test]
fn invalid_and_forbidden_signals_are_refused() {
    let rtmin = libc::SIGRTMIN();
    let mut refused = vec![
        libc::SIGKILL,
        libc::SIGSTOP,
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGILL,
        libc::SIGFPE,
        0,
        -1,
        i32::MIN,
        libc::SIGRTMAX() + 1,
        65,
        1000,
        i32::MAX,
    ];
    // The real-time numbers the C library keeps for itself (32 and 33 with
    // glibc), if any.
    refused.extend(32..rtmin);
    for signum in refused {
        let err = signal(signum).expect_err(&format!("signal({signum}) was accepted"));
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::InvalidInput,
            "signal({signum}): {err}"
        );
        assert!(!err.to_string().is_empty());
    }
}

/// Listening for the real-time signals at both ends of the range works
/// (nothing in this test process sends them).
#[test]
fn realtime_signals_can_be_listened_for() {
    for signum in [libc::SIGRTMIN(), libc::SIGRTMAX()] {
        let sig = signal(signum).unwrap_or_else(|e| panic!("signal({signum}): {e}"));
        drop(sig);
    }
}

/// SIGTERM sent by another process wakes every listener: two `Signal`s on
/// one runtime, one on a second runtime on another thread, and one awaited
/// with no runtime at all; again for a second delivery (which may come
/// before a listener is back in `recv`: it is not lost). SIGTERM no longer
/// terminates the child, which exits 0 by itself.
#[test]
fn kill_from_another_process_wakes_every_listener() {
    const NAME: &str = "kill_from_another_process_wakes_every_listener";
    if is_child(NAME) {
        let rounds = 2;
        let ready = Arc::new(Barrier::new(4));
        let done = Arc::new(Barrier::new(4));
        let mut threads = Vec::new();
        // Runtime A with two listeners.
        let (r, d) = (ready.clone(), done.clone());
        threads.push(thread::spawn(move || {
            let rt = runtime::Runtime::new().unwrap();
            rt.block_on(async move {
                let mut a = signal(libc::SIGTERM).unwrap();
                let mut b = signal(libc::SIGTERM).unwrap();
                r.wait();
                for round in 0..rounds {
                    expect_delivery(&mut a, &format!("A1 round {round}")).await;
                    expect_delivery(&mut b, &format!("A2 round {round}")).await;
                    d.wait();
                }
            });
        }));
        // Runtime B.
        let (r, d) = (ready.clone(), done.clone());
        threads.push(thread::spawn(move || {
            let rt = runtime::Runtime::new().unwrap();
            rt.block_on(async move {
                let mut c = signal(libc::SIGTERM).unwrap();
                r.wait();
                for round in 0..rounds {
                    expect_delivery(&mut c, &format!("B round {round}")).await;
                    d.wait();
                }
            });
        }));
        // No runtime: the waker unparks a plain thread.
        let (r, d) = (ready.clone(), done.clone());
        threads.push(thread::spawn(move || {
            let mut s = signal(libc::SIGTERM).unwrap();
            r.wait();
            for _ in 0..rounds {
                assert_eq!(park_on(s.recv()), Some(()));
                d.wait();
            }
        }));
        ready.wait();
        for round in 0..rounds {
            say(&format!("ready {round}"));
            done.wait();
        }
        for t in threads {
            t.join().unwrap();
        }
        say("done");
        return;
    }
    with_deadline(LIMIT, || {
        let mut child = Child::spawn(NAME);
        for round in 0..2 {
            child.expect(&format!("ready {round}"));
            child.kill(libc::SIGTERM);
        }
        child.expect("done");
        child.finish();
    });
}

/// `ctrl_c` completes at the next SIGINT, which no longer interrupts the
/// process.
#[test]
fn ctrl_c_completes_at_sigint() {
    const NAME: &str = "ctrl_c_completes_at_sigint";
    if is_child(NAME) {
        let rt = runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let mut fut = pin!(ctrl_c());
            // The first poll installs the listener.
            poll_fn(|cx| {
                assert!(fut.as_mut().poll(cx).is_pending());
                Poll::Ready(())
            })
            .await;
            say("ready");
            timeout(DELIVERY, fut)
                .await
                .expect("no SIGINT within the limit")
                .expect("ctrl_c failed");
            say("got");
        });
        return;
    }
    with_deadline(LIMIT, || {
        let mut child = Child::spawn(NAME);
        child.expect("ready");
        child.kill(libc::SIGINT);
        child.expect("got");
        child.finish();
    });
}

/// Deliveries that come while no `recv` is waiting (the task is busy) are
/// reported by the next `recv`, whichever thread the kernel ran the handler
/// on: the process (kernel's choice), the runtime's own thread (interrupting
/// or not its wait in `io_uring_enter`), a plain thread asleep in
/// `nanosleep`, the dispatcher thread itself.
#[test]
fn deliveries_between_recvs_are_not_lost() {
    const NAME: &str = "deliveries_between_recvs_are_not_lost";
    if is_child(NAME) {
        let (tid_tx, tid_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let sleeper = thread::spawn(move || {
            tid_tx.send(gettid()).unwrap();
            // Asleep until told to stop: a thread in a blocking call.
            let _ = stop_rx.recv();
        });
        let sleeper_tid = tid_rx.recv().unwrap();
        let rt = runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let mut sig = signal(libc::SIGUSR1).unwrap();
            let me = gettid();
            let dispatcher = thread_named("runtime-signal");
            for round in 0..40 {
                match round % 4 {
                    0 => kill_self(libc::SIGUSR1),
                    1 => tgkill(me, libc::SIGUSR1),
                    2 => tgkill(sleeper_tid, libc::SIGUSR1),
                    _ => tgkill(dispatcher, libc::SIGUSR1),
                }
                if round % 2 == 0 {
                    // Busy elsewhere: give the dispatcher time to handle the
                    // delivery before anyone waits for it.
                    thread::sleep(Duration::from_millis(5));
                }
                expect_delivery(&mut sig, &format!("round {round}")).await;
            }
            // A delivery to the runtime's thread while it waits in the ring:
            // sent from another thread once the task is parked in `recv`.
            for round in 0..5 {
                let mut recv = pin!(sig.recv());
                poll_fn(|cx| {
                    assert!(recv.as_mut().poll(cx).is_pending(), "spurious delivery");
                    Poll::Ready(())
                })
                .await;
                let killer = thread::spawn(move || {
                    thread::sleep(Duration::from_millis(20));
                    tgkill(me, libc::SIGUSR1);
                });
                assert_eq!(
                    timeout(DELIVERY, recv).await,
                    Ok(Some(())),
                    "parked round {round}"
                );
                killer.join().unwrap();
            }
        });
        stop_tx.send(()).unwrap();
        sleeper.join().unwrap();
        say("done");
        return;
    }
    with_deadline(LIMIT, || {
        let mut child = Child::spawn(NAME);
        child.expect("done");
        child.finish();
    });
}

/// Many deliveries while nobody waits are reported at least once and at
/// most once each (standard signals coalesce); a listener is not used up by
/// a burst; nothing is reported for a signal nobody sends; a listener made
/// later hears the next delivery, and dropping it leaves the others alone.
#[test]
fn deliveries_coalesce_and_nothing_is_spurious() {
    const NAME: &str = "deliveries_coalesce_and_nothing_is_spurious";
    if is_child(NAME) {
        let rt = runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let mut sig = signal(libc::SIGUSR2).unwrap();
            let sent = 50;
            for _ in 0..sent {
                kill_self(libc::SIGUSR2);
            }
            // At least one report...
            expect_delivery(&mut sig, "after the burst").await;
            // ...and at most one per delivery. (The quiet while ends the
            // count; it is not an assertion.)
            let mut reports = 1;
            while timeout(Duration::from_millis(300), sig.recv())
                .await
                .is_ok()
            {
                reports += 1;
                assert!(reports <= sent, "{reports} reports for {sent} deliveries");
            }
            // A signal nobody sends is never reported.
            let mut quiet = signal(libc::SIGRTMIN() + 3).unwrap();
            assert!(
                timeout(Duration::from_millis(200), quiet.recv())
                    .await
                    .is_err(),
                "a report without a delivery"
            );
            // The listener is not used up, and a new one hears the next
            // delivery too.
            let mut late = signal(libc::SIGUSR2).unwrap();
            kill_self(libc::SIGUSR2);
            expect_delivery(&mut sig, "after the quiet").await;
            expect_delivery(&mut late, "late listener").await;
            // A dropped listener leaves the others alone.
            drop(late);
            kill_self(libc::SIGUSR2);
            expect_delivery(&mut sig, "after a drop").await;
        });
        say("done");
        return;
    }
    with_deadline(LIMIT, || {
        let mut child = Child::spawn(NAME);
        child.expect("done");
        child.finish();
    });
}

/// A `recv` future dropped before it completes (as in a `select`) loses
/// nothing: the next `recv` reports the delivery.
#[test]
fn dropped_recv_loses_nothing() {
    const NAME: &str = "dropped_recv_loses_nothing";
    if is_child(NAME) {
        let rt = runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let mut sig = signal(libc::SIGHUP).unwrap();
            for _ in 0..3 {
                // Parked in recv, then given up on.
                assert!(timeout(Duration::from_millis(20), sig.recv())
                    .await
                    .is_err());
                kill_self(libc::SIGHUP);
                expect_delivery(&mut sig, "after a dropped recv").await;
            }
        });
        say("done");
        return;
    }
    with_deadline(LIMIT, || {
        let mut child = Child::spawn(NAME);
        child.expect("done");
        child.finish();
    });
}
