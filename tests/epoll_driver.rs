//! The epoll driver (`runtime::DriverKind::Epoll`), chosen explicitly, so
//! that these tests run on it in every pass of the suite: what it reports,
//! the io_uring-only facilities answering `Unsupported`, cancellation
//! meaning what it means on io_uring (a dropped read takes no bytes, a
//! dropped accept leaks no descriptor, a dropped blocking operation is kept
//! until the pool is done with it), how `RUNTIME_DRIVER` and
//! `Builder::driver` decide, and the example servers `http` (driven by
//! curl and wrk), `echo` and `kv` (raw RESP and redis-benchmark) on
//! epoll.
//!
//! The whole suite also runs on epoll in CI's second pass
//! (`RUNTIME_DRIVER=epoll`), and tests/setup_errors.rs runs the default
//! runtime under a seccomp filter that refuses io_uring.

use std::future::Future;
use std::io::{self, Read, Write};
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use integration_tests::{connected_fds_on_port, with_deadline, ExampleServer};
use runtime::op::{self, MultishotOperation, Operation, SharedFd};
use runtime::{Builder, DriverKind, Runtime};

/// How long one test may take (building the examples included).
const LIMIT: Duration = Duration::from_secs(300);

/// A runtime on the epoll driver, whatever the environment says.
fn epoll_rt() -> Runtime {
    Builder::new()
        .driver(DriverKind::Epoll)
        .build()
        .expect("cannot start an epoll runtime")
}

/// Runs `make()`'s future on an epoll runtime on its own thread, bounded.
fn on_epoll<M, F>(make: M) -> F::Output
where
    M: FnOnce() -> F + Send + 'static,
    F: Future,
    F::Output: Send + 'static,
{
    with_deadline(LIMIT, move || epoll_rt().block_on(make()))
}

/// Polls `fut` once.
async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx: &mut Context<'_>| Poll::Ready(std::pin::Pin::new(&mut *fut).poll(cx)))
        .await
}

#[test]
fn features_name_the_driver_and_no_io_uring_facility() {
    on_epoll(|| async {
        let f = runtime::features();
        assert_eq!(f.driver, DriverKind::Epoll);
        assert!(!f.send_zc && !f.buffer_rings && !f.multishot_recv && !f.recv_bundle);
        assert!(!f.direct_descriptors && !f.link_timeout && !f.skip_success);
        assert_eq!(f.opcode_count(), 0);
        assert!(format!("{f:?}").contains("Epoll"));
        assert_eq!(runtime::metrics().setup_flags, 0);
    });
    let rt = epoll_rt();
    assert_eq!(rt.features().driver, DriverKind::Epoll);
}

#[test]
fn io_uring_only_facilities_answer_unsupported_naming_the_facility() {
    on_epoll(|| async {
        let err = op::direct_table().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported);
        assert!(err.to_string().contains("direct-descriptor table"), "{err}");
        assert!(err.to_string().contains("epoll"), "{err}");

        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let err = SharedFd::new(a.into()).register().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported);
        assert!(err.to_string().contains("direct descriptors"), "{err}");

        let err = runtime::bufring::BufRing::builder().build().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported);

        // A chain is refused as a whole; its operations end Unsupported.
        let mut chain = op::Link::new();
        assert_eq!(chain.capacity(), 0);
        let nop = chain.push_op(op::Nop);
        let err = chain.submit().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported);
        assert!(err.to_string().contains("linked chains"), "{err}");
        assert_eq!(nop.await.unwrap_err().kind(), io::ErrorKind::Unsupported);

        // A raw SQE: its completion says EOPNOTSUPP.
        // SAFETY: a NOP points at no memory.
        let raw = unsafe { op::Op::submit((), |_| op::io_uring::opcode::Nop::new().build()) };
        let (completion, ()) = raw.await;
        assert_eq!(
            completion.result().unwrap_err().kind(),
            io::ErrorKind::Unsupported
        );

        // A multishot poll: one Unsupported completion, then the end.
        let (p, _q) = std::os::unix::net::UnixStream::pair().unwrap();
        let p = SharedFd::new(p.into());
        let mut polls = op::PollMulti::new(&p, libc::POLLIN as u32).start();
        let c = polls.next().await.expect("one completion");
        assert_eq!(c.raw_result(), -libc::EOPNOTSUPP);
        assert!(polls.next().await.is_none());
        assert_eq!(op::in_flight(), 0);
    });
}

#[test]
fn a_dropped_read_takes_no_bytes() {
    on_epoll(|| async {
        let (a, b) = net::UnixStream::pair().unwrap();
        for round in 0..20u8 {
            let mut read = Box::pin(a.read(Vec::with_capacity(16)));
            assert!(poll_once(&mut read).await.is_pending(), "nothing sent yet");
            assert_eq!(op::in_flight(), 1, "the waiting read is tracked");
            drop(read);
            assert_eq!(op::in_flight(), 0);
            b.write_all(vec![round; 3]).await.0.unwrap();
            // Let the runtime see the edge with nobody waiting.
            runtime::yield_now().await;
            let (n, buf) = a.read(Vec::with_capacity(16)).await;
            assert_eq!(n.unwrap(), 3, "round {round}");
            assert_eq!(buf, vec![round; 3]);
        }
    });
}

#[test]
fn a_dropped_accept_leaks_no_descriptor_and_loses_no_connection() {
    on_epoll(|| async {
        let listener = net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut accept = Box::pin(listener.accept());
        assert!(poll_once(&mut accept).await.is_pending());
        drop(accept);
        // The connection arrives after the accept was dropped: it waits in
        // the backlog, not in a descriptor nobody holds.
        let client = std::net::TcpStream::connect(addr).unwrap();
        runtime::yield_now().await;
        assert_eq!(connected_fds_on_port(addr.port()), 0);
        let (stream, peer) = listener.accept().await.unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        assert_eq!(connected_fds_on_port(addr.port()), 1);
        drop(stream);
        assert_eq!(connected_fds_on_port(addr.port()), 0);
    });
}

#[test]
fn a_dropped_blocking_operation_is_kept_until_the_pool_is_done() {
    on_epoll(|| async {
        // A pipe read blocks on the pool until the pipe has bytes.
        let (r, mut w) = std::io::pipe().unwrap();
        let r = SharedFd::new(r.into());
        let mut read = Box::pin(op::Read::new(&r, Vec::with_capacity(8), u64::MAX).submit());
        assert!(poll_once(&mut read).await.is_pending());
        drop(read);
        // The pool thread still reads into the buffer: it is parked.
        assert_eq!(op::in_flight(), 1);
        w.write_all(b"late").unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while op::in_flight() != 0 {
            assert!(
                Instant::now() < deadline,
                "the parked read was never released"
            );
            runtime::time::sleep(Duration::from_millis(1)).await;
        }
        // It took the bytes (as a read the kernel completed would).
        w.write_all(b"next").unwrap();
        let (n, buf) = op::Read::new(&r, Vec::with_capacity(8), u64::MAX)
            .submit()
            .await;
        assert_eq!(n.unwrap(), 4);
        assert_eq!(buf, b"next");
    });
}

#[test]
fn an_abandoned_open_closes_the_descriptor_it_made() {
    on_epoll(|| async {
        let dir = std::env::temp_dir().join(format!("epoll-open-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        std::fs::write(&path, b"x").unwrap();
        let fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
        let opened_by_us = |p: &std::path::Path| {
            std::fs::read_dir("/proc/self/fd")
                .unwrap()
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|t| t == p)
                .count()
        };
        let _ = fds();
        for _ in 0..20 {
            let mut open = Box::pin(fs::File::open(&path));
            let _ = poll_once(&mut open).await;
            drop(open);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while op::in_flight() != 0 || opened_by_us(&path) != 0 {
            assert!(
                Instant::now() < deadline,
                "an abandoned open kept its descriptor"
            );
            runtime::time::sleep(Duration::from_millis(1)).await;
        }
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

#[test]
fn deadlines_fire_on_a_runtime_timer() {
    on_epoll(|| async {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let fd = SharedFd::new(a.into());
        let mut read =
            pin!(op::Recv::new(&fd, Vec::with_capacity(8))
                .submit_with_timeout(Duration::from_millis(5)));
        let (res, buf) = read.as_mut().await;
        assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::ETIMEDOUT));
        assert!(read.timed_out());
        assert!(buf.is_empty());
        // One that completes in time says so.
        let (c, d) = std::os::unix::net::UnixStream::pair().unwrap();
        (&d).write_all(b"in time").unwrap();
        let c = SharedFd::new(c.into());
        let mut read =
            pin!(op::Recv::new(&c, Vec::with_capacity(8))
                .submit_with_timeout(Duration::from_secs(60)));
        let (res, buf) = read.as_mut().await;
        assert_eq!(res.unwrap(), 7);
        assert_eq!(buf, b"in time");
        assert!(!read.timed_out());
    });
}

#[test]
fn submit_and_wait_performs_on_this_thread() {
    on_epoll(|| async {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (a, b) = (SharedFd::new(a.into()), SharedFd::new(b.into()));
        op::submit_and_wait(op::Shutdown::new(&a, std::net::Shutdown::Write)).unwrap();
        let (n, _) = op::submit_and_wait(op::Recv::new(&b, Vec::with_capacity(4)));
        assert_eq!(n.unwrap(), 0, "end of stream after the shutdown");
    });
}

/// The child side of the environment tests: inert unless this process was
/// started by them (the marker variable).
#[test]
fn child_env_choice() {
    let Ok(expect) = std::env::var("EPOLL_DRIVER_TEST_CHILD") else {
        return;
    };
    match expect.as_str() {
        "invalid" => {
            let err = Runtime::new().unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(err.to_string().contains("RUNTIME_DRIVER"), "{err}");
            // An explicit choice does not read the variable.
            let rt = Builder::new().driver(DriverKind::Epoll).build().unwrap();
            assert_eq!(rt.features().driver, DriverKind::Epoll);
        }
        "epoll" => {
            assert_eq!(Runtime::new().unwrap().features().driver, DriverKind::Epoll);
            let rt = Builder::new().driver(DriverKind::IoUring).build().unwrap();
            assert_eq!(rt.features().driver, DriverKind::IoUring);
        }
        "io_uring" => {
            assert_eq!(
                Runtime::new().unwrap().features().driver,
                DriverKind::IoUring
            );
            let rt = Builder::new().driver(DriverKind::Epoll).build().unwrap();
            assert_eq!(rt.features().driver, DriverKind::Epoll);
        }
        other => panic!("unknown child case {other}"),
    }
    println!("EPOLL-DRIVER-CHILD-OK[{expect}]");
}

/// Runs `child_env_choice` in a child process with `RUNTIME_DRIVER=value`.
fn run_env_child(value: &str, case: &str) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_env_choice",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("RUNTIME_DRIVER", value)
        .env("EPOLL_DRIVER_TEST_CHILD", case)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(&format!("EPOLL-DRIVER-CHILD-OK[{case}]")),
        "child {case}: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn runtime_driver_variable_picks_the_default_and_builder_driver_wins() {
    run_env_child("bogus", "invalid");
    run_env_child("epoll", "epoll");
    run_env_child("io_uring", "io_uring");
}

/// Runs curl with `args`, bounded by its own `--max-time`.
fn curl(args: &[&str]) -> String {
    let out = std::process::Command::new("curl")
        .args(["-s", "--max-time", "30"])
        .args(args)
        .output()
        .expect("curl must be installed (.ci/run installs it)");
    assert!(out.status.success(), "curl {args:?}: {}", out.status);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn http_example_serves_curl_on_epoll() {
    with_deadline(LIMIT, || {
        let server = ExampleServer::start_with_env(
            env!("CARGO_TARGET_TMPDIR"),
            "http",
            &[("RUNTIME_DRIVER", "epoll")],
        );
        let base = format!("http://{}", server.addr);
        let root = format!("{base}/");
        let missing = format!("{base}/missing");
        // Two requests on one connection (curl reuses it), then a 404.
        let out = curl(&["-i", &root, &root]);
        assert_eq!(out.matches("HTTP/1.1 200").count(), 2, "{out}");
        assert_eq!(out.matches("Hello, World!").count(), 2, "{out}");
        let code = curl(&["-o", "/dev/null", "-w", "%{http_code}", &missing]);
        assert_eq!(code, "404");
        // Many connections at once.
        let clients: Vec<_> = (0..8)
            .map(|_| {
                let root = root.clone();
                std::thread::spawn(move || curl(&[&root, &root, &root, &root]))
            })
            .collect();
        for c in clients {
            assert_eq!(c.join().unwrap().matches("Hello, World!").count(), 4);
        }
    });
}

#[test]
fn echo_example_serves_concurrent_clients_on_epoll() {
    with_deadline(LIMIT, || {
        let server = ExampleServer::start_with_env(
            env!("CARGO_TARGET_TMPDIR"),
            "echo",
            &[("RUNTIME_DRIVER", "epoll")],
        );
        let addr = server.addr;
        let clients: Vec<_> = (0..16u64)
            .map(|i| {
                std::thread::spawn(move || {
                    let mut s = std::net::TcpStream::connect(addr).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                    let data = integration_tests::payload(i, 256 * 1024);
                    let mut w = s.try_clone().unwrap();
                    let sent = data.clone();
                    let writer = std::thread::spawn(move || w.write_all(&sent).unwrap());
                    let mut got = vec![0u8; data.len()];
                    s.read_exact(&mut got).unwrap();
                    writer.join().unwrap();
                    assert!(got == data, "client {i}: echo differs");
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
    });
}

#[test]
fn kv_example_serves_resp_clients_on_epoll() {
    with_deadline(LIMIT, || {
        let server = ExampleServer::start_with_env(
            env!("CARGO_TARGET_TMPDIR"),
            "kv",
            &[("RUNTIME_DRIVER", "epoll")],
        );
        let mut s = std::net::TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut ask = |req: &[u8], want: &[u8]| {
            s.write_all(req).unwrap();
            let mut got = vec![0u8; want.len()];
            s.read_exact(&mut got).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(want),
                "answer to {:?}",
                String::from_utf8_lossy(req)
            );
        };
        ask(b"PING\r\n", b"+PONG\r\n");
        ask(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n", b"+OK\r\n");
        ask(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", b"$5\r\nvalue\r\n");
        // Pipelined: both answers in order.
        ask(b"PING\r\nPING\r\n", b"+PONG\r\n+PONG\r\n");
    });
}

/// Runs `program` with `args` (a load generator: it ends on its own) and
/// returns its standard output; fails the test if it is missing or fails.
fn run_tool(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} must be installed (.ci/run installs it): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn http_example_serves_wrk_on_epoll() {
    with_deadline(LIMIT, || {
        let server = ExampleServer::start_with_env(
            env!("CARGO_TARGET_TMPDIR"),
            "http",
            &[("RUNTIME_DRIVER", "epoll")],
        );
        let url = format!("http://{}/", server.addr);
        let out = run_tool("wrk", &["-t1", "-c50", "-d2s", &url]);
        // "N requests in ...", no socket errors, no non-2xx answers.
        let requests: u64 = out
            .lines()
            .find(|l| l.contains("requests in"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no request count in wrk's output:\n{out}"));
        assert!(requests > 0, "{out}");
        assert!(!out.contains("Socket errors"), "{out}");
        assert!(!out.contains("Non-2xx"), "{out}");
    });
}

#[test]
fn kv_example_serves_redis_benchmark_on_epoll() {
    with_deadline(LIMIT, || {
        let server = ExampleServer::start_with_env(
            env!("CARGO_TARGET_TMPDIR"),
            "kv",
            &[("RUNTIME_DRIVER", "epoll")],
        );
        let port = server.addr.port().to_string();
        let out = run_tool(
            "redis-benchmark",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-n",
                "2000",
                "-c",
                "20",
                "-t",
                "ping,set,get",
                "-q",
            ],
        );
        for test in ["PING_INLINE", "PING_MBULK", "SET", "GET"] {
            assert!(
                // Progress lines end with \r; the result line of a test is
                // "NAME: N requests per second, ...".
                out.split(['\n', '\r']).any(|l| {
                    let l = l.trim();
                    l.starts_with(&format!("{test}: ")) && l.contains("requests per second")
                }),
                "redis-benchmark did not complete {test}:\n{out}"
            );
        }
        // The data is really there: what the benchmark SET, GET returns.
        let mut s = std::net::TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(b"*2\r\n$3\r\nGET\r\n$16\r\nkey:__rand_int__\r\n")
            .unwrap();
        let mut head = [0u8; 4];
        s.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"$3\r\n", "GET of the benchmark's key");
    });
}
