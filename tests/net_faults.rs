//! The net issue's "Bad input and faults" scenario for listeners: an
//! accept failing with EMFILE (the process is out of descriptors) yields an
//! error from `accept` and from `incoming`, does not turn the accept loop
//! into a busy loop (the listener backs off: 1 ms doubling to 200 ms), does
//! not end the stream or the process, and the listener accepts the waiting
//! connections once descriptors are free again.
//!
//! Running out of descriptors is process-wide, so this binary holds only
//! these tests, and they run one at a time (a static mutex). Each lowers the
//! soft `RLIMIT_NOFILE` a little above what is open, fills the rest with
//! `/dev/null` descriptors until `open` fails with EMFILE, and undoes both in
//! a guard's `Drop` (also when the test fails). Client connections are made
//! before the descriptors run out: their handshakes complete in the
//! listener's backlog, so they wait there for an accept that can succeed.
//!
//! The busy-loop checks count the accept errors yielded during ~300 ms. With
//! the back-off that is about 10; the bound (20) only fails if accepts are
//! retried much faster than the back-off allows, never because the machine
//! is slow (slowness makes fewer attempts, not more).

use std::collections::BTreeSet;
use std::future::Future;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use integration_tests::{connected_fds_on_port, with_deadline};
use net::{TcpListener, TcpStream, UnixListener, UnixStream};
use runtime::op::in_flight;
use runtime::time::{sleep, timeout_at};
use runtime::Runtime;

/// The limit of every test.
const LIMIT: Duration = Duration::from_secs(60);
/// How long the busy-loop checks watch a failing listener.
const WATCH: Duration = Duration::from_millis(300);
/// The most accept errors allowed during [`WATCH`]: about 10 with the
/// back-off, hundreds or more in a busy loop.
const MAX_ERRORS: usize = 20;

/// Serializes the tests of this binary: the descriptor limit is shared.
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

/// The process out of descriptors: a lowered soft limit, filled up with
/// `/dev/null`. Dropping it frees the descriptors and restores the limit.
struct Exhausted {
    fillers: Vec<OwnedFd>,
    saved: libc::rlimit,
}

impl Exhausted {
    fn new() -> Exhausted {
        let mut saved = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the live struct it is given.
        let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut saved) };
        assert_eq!(rc, 0, "getrlimit: {}", io::Error::last_os_error());
        let highest = std::fs::read_dir("/proc/self/fd")
            .expect("/proc/self/fd")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
            .max()
            .unwrap_or(2);
        let lowered = libc::rlimit {
            rlim_cur: (highest + 64).min(saved.rlim_cur),
            rlim_max: saved.rlim_max,
        };
        // SAFETY: setrlimit reads the live struct it is given.
        let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) };
        assert_eq!(rc, 0, "setrlimit: {}", io::Error::last_os_error());
        let mut ex = Exhausted {
            fillers: Vec::new(),
            saved,
        };
        loop {
            match std::fs::File::open("/dev/null") {
                Ok(f) => ex.fillers.push(f.into()),
                Err(e) if e.raw_os_error() == Some(libc::EMFILE) => break,
                Err(e) => panic!("opening /dev/null: {e}"),
            }
            assert!(
                ex.fillers.len() < 100_000,
                "the descriptor limit is not enforced"
            );
        }
        ex
    }
}

impl Drop for Exhausted {
    fn drop(&mut self) {
        self.fillers.clear();
        // SAFETY: setrlimit reads the live struct it is given.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &self.saved) };
    }
}

/// Whether `e` says the process or the system is out of descriptors.
fn out_of_fds(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// Waits (bounded) until the runtime has no operation in flight, so that no
/// cancelled accept can still take a connection once descriptors are free.
async fn settle() {
    let deadline = Instant::now() + Duration::from_secs(10);
    while in_flight() != 0 {
        assert!(Instant::now() < deadline, "operations never finished");
        sleep(Duration::from_millis(1)).await;
    }
}

/// Opens two TCP connections to `addr` whose first byte is their ID (1 and
/// 2). They complete in the backlog, so no accept is needed yet.
fn tcp_clients(addr: std::net::SocketAddr) -> Vec<std::net::TcpStream> {
    (1..=2u8)
        .map(|id| {
            let mut c = std::net::TcpStream::connect(addr).expect("std connect");
            c.write_all(&[id]).expect("std write");
            c
        })
        .collect()
}

/// Reads the ID byte a client sent first.
async fn read_id<S: runtime::io::OwnedRead>(s: &S) -> u8 {
    let (res, id) = s.read_exact(Vec::with_capacity(1)).await;
    res.expect("read the client's ID");
    id[0]
}

/// `accept` fails with EMFILE while no descriptor is free; retried in a
/// loop for ~300 ms it fails only a handful of times (it backs off rather
/// than spinning); once descriptors are free it accepts both waiting
/// connections, and the streams work.
#[test]
fn tcp_accept_emfile_backs_off_and_recovers() {
    run(|| async {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let clients = tcp_clients(listener.local_addr().unwrap());
        let exhausted = Exhausted::new();
        assert!(!exhausted.fillers.is_empty());

        let err = listener
            .accept()
            .await
            .expect_err("accept with no descriptor free");
        assert!(out_of_fds(&err), "accept error: {err:?}");
        let until = Instant::now() + WATCH;
        let mut errors = 1;
        loop {
            match timeout_at(until, listener.accept()).await {
                Err(_elapsed) => break,
                Ok(Err(e)) => {
                    assert!(out_of_fds(&e), "accept error: {e:?}");
                    errors += 1;
                    assert!(
                        errors <= MAX_ERRORS,
                        "{errors} accept errors within {WATCH:?}: a busy loop"
                    );
                }
                Ok(Ok(_)) => panic!("accept succeeded with no descriptor free"),
            }
        }
        eprintln!("tcp accept: {errors} EMFILE errors in {WATCH:?}");
        settle().await;
        drop(exhausted);

        let mut ids = BTreeSet::new();
        for _ in 0..2 {
            let (s, peer) = listener.accept().await.expect("accept after recovery");
            assert!(peer.ip().is_loopback());
            ids.insert(read_id(&s).await);
            let (res, _) = s.write_all(&b"ok"[..]).await;
            res.expect("write");
        }
        assert_eq!(ids, BTreeSet::from([1, 2]));
        // And new connections too, with no back-off left to wait out.
        let c = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .expect("connect");
        let (s, _) = listener.accept().await.expect("accept a new connection");
        assert_eq!(s.peer_addr().unwrap(), c.local_addr().unwrap());
        drop(clients);
    });
}

/// `incoming()` yields EMFILE errors while no descriptor is free, a
/// handful over ~300 ms (back-off, no busy loop), and keeps going: it never
/// ends, and once descriptors are free it yields both waiting connections.
#[test]
fn tcp_incoming_emfile_backs_off_and_recovers() {
    run(|| async {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let clients = tcp_clients(listener.local_addr().unwrap());
        let mut incoming = listener.incoming();
        let exhausted = Exhausted::new();

        let until = Instant::now() + WATCH;
        let mut errors = 0;
        loop {
            match timeout_at(until, incoming.next()).await {
                Err(_elapsed) => break,
                Ok(None) => panic!("incoming ended"),
                Ok(Some(Err(e))) => {
                    assert!(out_of_fds(&e), "incoming error: {e:?}");
                    errors += 1;
                    assert!(
                        errors <= MAX_ERRORS,
                        "{errors} incoming errors within {WATCH:?}: a busy loop"
                    );
                }
                Ok(Some(Ok(_))) => panic!("incoming accepted with no descriptor free"),
            }
        }
        eprintln!("tcp incoming: {errors} EMFILE errors in {WATCH:?}");
        assert!(
            errors >= 1,
            "no error yielded in {WATCH:?} while out of descriptors"
        );
        // No settling needed: the accepts are `incoming`'s own multishot
        // op, never dropped, so whatever it accepts is yielded below.
        drop(exhausted);

        let mut ids = BTreeSet::new();
        while ids.len() < 2 {
            let s = incoming
                .next()
                .await
                .expect("incoming never ends")
                .expect("accept after recovery");
            ids.insert(read_id(&s).await);
        }
        assert_eq!(ids, BTreeSet::from([1, 2]));
        drop(clients);
    });
}

/// A server written the usual way (a task looping on `accept`, logging and
/// continuing on errors) survives running out of descriptors: it does not
/// spin (few errors over ~300 ms), does not exit, and serves the waiting
/// client once descriptors are free.
#[test]
fn tcp_accept_loop_task_survives_emfile() {
    run(|| async {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().unwrap();
        let mut client = std::net::TcpStream::connect(addr).expect("std connect");
        client.write_all(&[7]).expect("std write");
        let errors = std::rc::Rc::new(std::cell::Cell::new(0usize));
        let exhausted = Exhausted::new();
        let server = {
            let errors = errors.clone();
            runtime::spawn(async move {
                loop {
                    match listener.accept().await {
                        Ok((s, _)) => {
                            let id = read_id(&s).await;
                            let (res, _) = s.write_all(vec![id + 1]).await;
                            res.expect("reply");
                            return id;
                        }
                        Err(e) => {
                            assert!(out_of_fds(&e), "accept error: {e:?}");
                            errors.set(errors.get() + 1);
                        }
                    }
                }
            })
        };
        sleep(WATCH).await;
        let seen = errors.get();
        eprintln!("accept loop: {seen} EMFILE errors in {WATCH:?}");
        assert!(
            seen <= MAX_ERRORS,
            "{seen} accept errors within {WATCH:?}: a busy loop"
        );
        assert!(!server.is_finished(), "the server task ended");
        drop(exhausted);
        assert_eq!(server.await.expect("server task"), 7);
        let mut reply = [0u8; 1];
        std::io::Read::read_exact(&mut client, &mut reply).expect("std read");
        assert_eq!(reply, [8]);
    });
}

/// The same for a Unix listener: `accept` fails with EMFILE and backs off,
/// then `incoming` does too; once descriptors are free, `incoming` yields
/// the three waiting connections and `accept` takes a new one.
#[test]
fn unix_accept_and_incoming_emfile_back_off_and_recover() {
    run(|| async {
        let path = std::env::temp_dir().join(format!("net-faults-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).expect("bind");
        let mut clients = Vec::new();
        for id in 1..=3u8 {
            let mut c = std::os::unix::net::UnixStream::connect(&path).expect("std connect");
            c.write_all(&[id]).expect("std write");
            clients.push(c);
        }
        let exhausted = Exhausted::new();

        let err = listener
            .accept()
            .await
            .expect_err("accept with no descriptor free");
        assert!(out_of_fds(&err), "accept error: {err:?}");
        let until = Instant::now() + WATCH;
        let mut errors = 1;
        loop {
            match timeout_at(until, listener.accept()).await {
                Err(_elapsed) => break,
                Ok(Err(e)) => {
                    assert!(out_of_fds(&e), "accept error: {e:?}");
                    errors += 1;
                    assert!(
                        errors <= MAX_ERRORS,
                        "{errors} accept errors within {WATCH:?}: a busy loop"
                    );
                }
                Ok(Ok(_)) => panic!("accept succeeded with no descriptor free"),
            }
        }
        eprintln!("unix accept: {errors} EMFILE errors in {WATCH:?}");
        // No dropped accept may still be in the kernel when descriptors
        // come back.
        settle().await;

        let mut incoming = listener.incoming();
        let until = Instant::now() + WATCH;
        let mut errors = 0;
        loop {
            match timeout_at(until, incoming.next()).await {
                Err(_elapsed) => break,
                Ok(Some(Err(e))) => {
                    assert!(out_of_fds(&e), "incoming error: {e:?}");
                    errors += 1;
                    assert!(
                        errors <= MAX_ERRORS,
                        "{errors} incoming errors within {WATCH:?}: a busy loop"
                    );
                }
                Ok(other) => panic!("incoming gave {:?}", other.map(|r| r.map(drop))),
            }
        }
        eprintln!("unix incoming: {errors} EMFILE errors in {WATCH:?}");
        assert!(
            errors >= 1,
            "no error yielded in {WATCH:?} while out of descriptors"
        );
        drop(exhausted);

        let mut ids = BTreeSet::new();
        while ids.len() < 3 {
            let s: UnixStream = incoming
                .next()
                .await
                .expect("incoming never ends")
                .expect("incoming after recovery");
            ids.insert(read_id(&s).await);
        }
        assert_eq!(ids, BTreeSet::from([1, 2, 3]));
        drop(incoming);
        let c = UnixStream::connect(&path).await.expect("connect");
        let (res, _) = c.write_all(vec![4]).await;
        res.expect("write");
        let (s, _) = listener.accept().await.expect("accept after recovery");
        assert_eq!(read_id(&s).await, 4);
        assert!(clients.iter().all(|c| c.as_raw_fd() >= 0));
        drop(clients);
        let _ = std::fs::remove_file(&path);
    });
}

/// Dropping a runtime with reads in flight on accepted connections closes
/// those connections: the cancelled reads' data (holding the last handle)
/// is freed after the ring's last submission, so the close must not wait
/// for a submission that never comes.
#[test]
fn dropping_a_runtime_with_reads_in_flight_closes_their_sockets() {
    // Alone in this binary: other tests here use up every descriptor.
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    with_deadline(LIMIT, || {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let clients: Vec<_> = (0..20)
            .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
            .collect();
        let rt = runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let listener = net::TcpListener::from_std(listener);
            for _ in 0..20 {
                let (s, _) = listener.accept().await.unwrap();
                // Reads that never complete: the clients send nothing.
                runtime::spawn(async move {
                    let _ = s.read(Vec::with_capacity(64)).await;
                });
            }
            runtime::yield_now().await;
        });
        assert_eq!(connected_fds_on_port(port), 20);
        drop(rt);
        assert_eq!(connected_fds_on_port(port), 0, "sockets left open");
        drop(clients);
    });
}
