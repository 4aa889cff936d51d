//! The `echo`, `http` and `kv` example servers on several workers
//! (`--threads N`): hundreds of connections at once, every answer checked
//! byte for byte, more than one worker used, and kv's one store seen
//! alike through connections that different workers serve.
//!
//! Which workers served: when a server on several workers stops, each
//! worker writes `<name> worker <i>: served <n> connections` to stderr.
//! The tests make an exact number of connections, each answered before
//! the server is told to stop, so the counts must add up to it, and at
//! least two workers must have a share (the kernel spreads connections
//! over the `SO_REUSEPORT` listeners by a hash of the client's address
//! and port: hundreds of connections all on one of them would be a broken
//! spread). The process's threads are checked too: N threads named
//! `runtime-worker-*`. The graceful shutdown under load on two workers is
//! in `graceful.rs`.

mod example_process;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::thread;

use example_process::{Server, LIMIT};
use examples::shutdown::ServerArgs;
use integration_tests::with_deadline;

/// Connections each client thread holds open at once.
const PER_CLIENT: usize = 40;

/// Client threads per test: `CLIENTS * PER_CLIENT` connections in all.
const CLIENTS: usize = 8;

/// The `http` example's answer to `GET /`.
const OK: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";

#[test]
fn threads_flag_parses_and_rejects_bad_counts() {
    let parse =
        |args: &[&str]| ServerArgs::parse_from(args.iter().map(|s| s.to_string()), "127.0.0.1:1");
    assert_eq!(parse(&[]).unwrap().threads, 1);
    let a = parse(&["--threads", "4", "127.0.0.1:9"]).unwrap();
    assert_eq!((a.threads, a.addr.as_str()), (4, "127.0.0.1:9"));
    assert_eq!(parse(&["--threads", "1"]).unwrap().threads, 1);
    for bad in [
        &["--threads", "0"][..],
        &["--threads", "two"],
        &["--threads", "-2"],
        &["--threads"],
    ] {
        assert!(parse(bad).is_err(), "{bad:?} was accepted");
    }
}

/// A bad `--threads` is a usage error: status 2 and a message, for each of
/// the three servers.
#[test]
fn a_bad_thread_count_exits_2() {
    with_deadline(LIMIT, || {
        for (name, count) in [("echo", "0"), ("http", "x"), ("kv", "0")] {
            let binary = integration_tests::example_binary(env!("CARGO_TARGET_TMPDIR"), name);
            let out = Command::new(binary)
                .args(["127.0.0.1:0", "--threads", count])
                .stdin(Stdio::null())
                .output()
                .expect("run the example");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
            assert!(stderr.contains("--threads"), "{name}: {stderr}");
            assert!(stderr.contains("usage:"), "{name}: {stderr}");
        }
    });
}

/// The names of the threads of process `pid` that are pool workers
/// (`/proc/<pid>/task/*/comm`, which the kernel cuts to 15 bytes:
/// `runtime-worker-`).
fn worker_threads(pid: u32) -> usize {
    // Seen once under a loaded full run: fewer workers than asked for just
    // after the "listening" line. Look again for a bounded while before
    // concluding, and say what was seen.
    let mut seen = Vec::new();
    for _ in 0..100 {
        let n = count_worker_threads(pid);
        seen.push(n);
        if seen.len() >= 2 && seen[seen.len() - 2] == n {
            return n;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("worker thread count never settled: {seen:?}");
}

/// The threads of `pid` named like pool workers, now.
fn count_worker_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the server's threads")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.starts_with("runtime-worker"))
        .count()
}

/// Stops `server` with SIGTERM, checks it exits 0, and returns how many
/// connections each of its `workers` said it served.
fn stop_and_count(mut server: Server, name: &str, workers: usize) -> Vec<usize> {
    server.shut_down(libc::SIGTERM);
    server.expect_clean_exit();
    let log = server.full_log();
    (0..workers)
        .map(|i| {
            let prefix = format!("{name} worker {i}: served ");
            let line = log
                .lines()
                .find(|l| l.starts_with(&prefix))
                .unwrap_or_else(|| panic!("worker {i} did not say what it served:\n{log}"));
            line[prefix.len()..]
                .trim_end_matches(" connections")
                .parse()
                .unwrap_or_else(|_| panic!("{line}"))
        })
        .collect()
}

/// Runs `client(thread, connection index, stream)` over `CLIENTS` threads,
/// each opening its `PER_CLIENT` connections first (all open at once) and
/// then using each in turn.
fn many_connections(server: &Server, client: fn(usize, usize, &mut TcpStream)) {
    let addr = server.addr;
    let threads: Vec<_> = (0..CLIENTS)
        .map(|t| {
            thread::spawn(move || {
                let mut conns: Vec<TcpStream> = (0..PER_CLIENT)
                    .map(|_| {
                        let s = TcpStream::connect(addr).expect("connect");
                        s.set_read_timeout(Some(example_process::IO_TIMEOUT))
                            .unwrap();
                        s
                    })
                    .collect();
                for (i, s) in conns.iter_mut().enumerate() {
                    client(t, i, s);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a client failed");
    }
}

/// Checks the counts the workers gave: all connections, more than one
/// worker.
fn check_spread(name: &str, served: &[usize]) {
    let total: usize = served.iter().sum();
    assert_eq!(total, CLIENTS * PER_CLIENT, "{name}: {served:?}");
    let used = served.iter().filter(|&&n| n > 0).count();
    assert!(
        used >= 2,
        "{name}: one worker served everything: {served:?}"
    );
}

#[test]
fn http_on_two_workers_serves_hundreds_of_connections() {
    with_deadline(LIMIT, || {
        let server = Server::start("http", &["--threads", "2"]);
        let workers = worker_threads(server.child.id());
        assert_eq!(workers, 2, "worker threads of the server");
        many_connections(&server, |_, _, s| {
            // Two requests, pipelined, and one more after their answers.
            let req = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";
            s.write_all(&req.repeat(2)).unwrap();
            let mut got = vec![0; 2 * OK.len()];
            s.read_exact(&mut got).unwrap();
            assert_eq!(got, OK.repeat(2), "{}", String::from_utf8_lossy(&got));
            s.write_all(req).unwrap();
            let mut got = vec![0; OK.len()];
            s.read_exact(&mut got).unwrap();
            assert_eq!(got, OK);
        });
        let served = stop_and_count(server, "http", 2);
        check_spread("http", &served);
    });
}

#[test]
fn echo_on_four_workers_serves_hundreds_of_connections() {
    with_deadline(LIMIT, || {
        let server = Server::start("echo", &["--threads", "4"]);
        let workers = worker_threads(server.child.id());
        assert_eq!(workers, 4, "worker threads of the server");
        many_connections(&server, |t, i, s| {
            let msg = integration_tests::payload((t * 1000 + i) as u64, 3000);
            s.write_all(&msg).unwrap();
            let mut got = vec![0; msg.len()];
            s.read_exact(&mut got).unwrap();
            assert_eq!(got, msg);
        });
        let served = stop_and_count(server, "echo", 4);
        check_spread("echo", &served);
    });
}

/// Sends one RESP command and returns exactly `want.len()` bytes of reply.
fn kv_exchange(s: &mut TcpStream, args: &[&str], want: &[u8]) {
    let mut cmd = format!("*{}\r\n", args.len());
    for a in args {
        cmd.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(cmd.as_bytes()).unwrap();
    let mut got = vec![0; want.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(
        got,
        want,
        "{args:?}: {:?} instead of {:?}",
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(want)
    );
}

/// One store for all workers: a value set through one connection is read
/// back through hundreds of others, spread over the workers; every
/// connection's own key, set on it, is read back through the next
/// connection of its thread; and `INCR` from every connection adds up.
#[test]
fn kv_on_two_workers_shares_one_store() {
    with_deadline(LIMIT, || {
        let server = Server::start("kv", &["--threads", "2"]);
        let workers = worker_threads(server.child.id());
        assert_eq!(workers, 2, "worker threads of the server");
        let mut first = server.connect();
        kv_exchange(&mut first, &["SET", "greeting", "hello"], b"+OK\r\n");
        many_connections(&server, |t, i, s| {
            kv_exchange(s, &["GET", "greeting"], b"$5\r\nhello\r\n");
            kv_exchange(s, &["INCR", "visits"], b":");
            // The rest of the integer reply, whatever the count is now.
            let mut byte = [0];
            let mut line = Vec::new();
            while !line.ends_with(b"\r\n") {
                s.read_exact(&mut byte).unwrap();
                line.push(byte[0]);
            }
            let key = format!("key-{t}-{i}");
            let value = format!("value-{t}-{i}");
            kv_exchange(s, &["SET", &key, &value], b"+OK\r\n");
            // Read back through another connection of the server.
            let mut other = TcpStream::connect(s.peer_addr().unwrap()).unwrap();
            other
                .set_read_timeout(Some(example_process::IO_TIMEOUT))
                .unwrap();
            let want = format!("${}\r\n{value}\r\n", value.len());
            kv_exchange(&mut other, &["GET", &key], want.as_bytes());
        });
        // Every INCR counted once, whichever worker ran it.
        let total = (CLIENTS * PER_CLIENT).to_string();
        let want = format!("${}\r\n{total}\r\n", total.len());
        kv_exchange(&mut first, &["GET", "visits"], want.as_bytes());
        drop(first);
        let served = stop_and_count(server, "kv", 2);
        // Every connection of the clients, its companion, and `first`.
        let all: usize = served.iter().sum();
        assert_eq!(all, 2 * CLIENTS * PER_CLIENT + 1, "{served:?}");
        assert!(served.iter().all(|&n| n > 0), "{served:?}");
    });
}
