//! The `kv` example server against real clients: the `redis` client crate
//! (its synchronous connection), and raw `std::net::TcpStream`s for the
//! wire-level checks (inline commands, split commands, malformed input).
//!
//! Each test starts the real example as a child process
//! (the example binary built by `integration_tests::example_binary`, run
//! with `127.0.0.1:<port>`), waits (bounded) until it accepts connections,
//! and kills it when the test ends, pass or fail.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use integration_tests::with_deadline;

/// How long one test may take, including building the example on first use.
const TEST_LIMIT: Duration = Duration::from_secs(300);

/// How long a client waits for bytes before failing.
const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `kv` example; killed (and reaped) when dropped.
struct Server {
    /// Kept for its `Drop`, which kills the server.
    _server: integration_tests::ExampleServer,
    addr: SocketAddr,
}

impl Server {
    /// Starts the example on a free port and waits until it accepts.
    fn start() -> Server {
        let server = integration_tests::ExampleServer::start(env!("CARGO_TARGET_TMPDIR"), "kv");
        Server {
            addr: server.addr,
            _server: server,
        }
    }

    /// A `redis` crate connection to this server.
    fn client(&self) -> redis::Connection {
        let client = redis::Client::open(format!("redis://{}/", self.addr)).expect("client");
        let con = client
            .get_connection_with_timeout(IO_TIMEOUT)
            .expect("connect");
        con.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        con.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        con
    }

    /// A raw connection to this server.
    fn raw(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).expect("connect");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
    }
}

/// Reads exactly `n` bytes and returns them as text.
fn read_n(stream: &mut TcpStream, n: usize) -> String {
    let mut buf = vec![0; n];
    stream.read_exact(&mut buf).expect("reply");
    String::from_utf8(buf).expect("utf-8 reply")
}

/// Reads until the server closes the connection.
fn read_to_close(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).expect("read until close");
    String::from_utf8(buf).expect("utf-8 reply")
}

/// Runs one `redis` command and returns its typed reply.
fn query<T: redis::FromRedisValue>(con: &mut redis::Connection, args: &[&str]) -> T {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(con)
        .unwrap_or_else(|e| panic!("{args:?} failed: {e}"))
}

/// Runs one `redis` command that must fail and returns the error's text.
fn query_err(con: &mut redis::Connection, args: &[&str]) -> String {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    match cmd.query::<redis::Value>(con) {
        Ok(v) => panic!("{args:?} succeeded with {v:?}"),
        Err(e) => e.to_string(),
    }
}

/// SET then GET returns the value (binary-safe, including an empty value and
/// one of 1 MiB that spans many reads), and GET of a key never set is nil.
#[test]
fn set_get_round_trip_and_missing_key() {
    with_deadline(TEST_LIMIT, || {
        let server = Server::start();
        let mut con = server.client();
        let _: () = query(&mut con, &["SET", "greeting", "hello"]);
        assert_eq!(query::<String>(&mut con, &["GET", "greeting"]), "hello");
        assert_eq!(query::<Option<String>>(&mut con, &["GET", "missing"]), None);

        let binary: Vec<u8> = (0..=255u8)
            .chain(b"\r\n$3\r\n*1\r\n".iter().copied())
            .collect();
        let _: () = redis::cmd("SET")
            .arg("bin")
            .arg(&binary)
            .query(&mut con)
            .unwrap();
        let got: Vec<u8> = redis::cmd("GET").arg("bin").query(&mut con).unwrap();
        assert_eq!(got, binary);

        let _: () = query(&mut con, &["SET", "empty", ""]);
        assert_eq!(
            query::<Option<String>>(&mut con, &["GET", "empty"]),
            Some(String::new())
        );

        let big: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
        let _: () = redis::cmd("SET")
            .arg("big")
            .arg(&big)
            .query(&mut con)
            .unwrap();
        let got: Vec<u8> = redis::cmd("GET").arg("big").query(&mut con).unwrap();
        assert!(got == big, "the 1 MiB value came back different");
    });
}

/// DEL and EXISTS take several keys and count them (EXISTS counts a repeated
/// key each time), and SET's NX/XX conditions hold.
#[test]
fn del_exists_counts_and_set_conditions() {
    with_deadline(TEST_LIMIT, || {
        let server = Server::start();
        let mut con = server.client();
        for k in ["a", "b", "c"] {
            let _: () = query(&mut con, &["SET", k, "1"]);
        }
        assert_eq!(query::<i64>(&mut con, &["EXISTS", "a", "b", "x", "a"]), 3);
        assert_eq!(query::<i64>(&mut con, &["DEL", "a", "x", "b"]), 2);
        assert_eq!(query::<i64>(&mut con, &["EXISTS", "a", "b", "c"]), 1);
        assert_eq!(query::<i64>(&mut con, &["DEL", "a"]), 0);

        assert_eq!(
            query::<Option<String>>(&mut con, &["SET", "c", "2", "NX"]),
            None
        );
        assert_eq!(
            query::<Option<String>>(&mut con, &["SET", "n", "3", "XX"]),
            None
        );
        assert_eq!(
            query::<Option<String>>(&mut con, &["SET", "c", "4", "xx"]),
            Some("OK".into())
        );
        assert_eq!(query::<String>(&mut con, &["GET", "c"]), "4");
        let err = query_err(&mut con, &["SET", "c", "5", "EX", "10"]);
        assert!(err.contains("not supported"), "{err}");
    });
}

/// INCR counts from a missing key and from a stored integer, and refuses a
/// value that is not an integer (or would overflow) with Redis's error,
/// leaving the value alone.
#[test]
fn incr_and_its_errors() {
    with_deadline(TEST_LIMIT, || {
        let server = Server::start();
        let mut con = server.client();
        assert_eq!(query::<i64>(&mut con, &["INCR", "counter"]), 1);
        assert_eq!(query::<i64>(&mut con, &["INCR", "counter"]), 2);
        let _: () = query(&mut con, &["SET", "counter", "41"]);
        assert_eq!(query::<i64>(&mut con, &["incr", "counter"]), 42);
        assert_eq!(query::<String>(&mut con, &["GET", "counter"]), "42");

        let _: () = query(&mut con, &["SET", "word", "hello"]);
        let err = query_err(&mut con, &["INCR", "word"]);
        assert!(
            err.contains("value is not an integer or out of range"),
            "{err}"
        );
        assert_eq!(query::<String>(&mut con, &["GET", "word"]), "hello");

        let _: () = query(&mut con, &["SET", "max", &i64::MAX.to_string()]);
        let err = query_err(&mut con, &["INCR", "max"]);
        assert!(err.contains("overflow"), "{err}");
    });
}

/// PING with and without a message, ECHO, COMMAND (an empty array, so
/// stock clients work), and an unknown command's error, which leaves the
/// connection usable.
#[test]
fn ping_echo_command_and_unknown() {
    with_deadline(TEST_LIMIT, || {
        let server = Server::start();
        let mut con = server.client();
        assert_eq!(query::<String>(&mut con, &["PING"]), "PONG");
        assert_eq!(query::<String>(&mut con, &["PING", "hi there"]), "hi there");
        assert_eq!(
            query::<String>(&mut con, &["ECHO", "echo\r\nme"]),
            "echo\r\nme"
        );
        assert_eq!(
            query::<Vec<String>>(&mut con, &["COMMAND"]),
            Vec::<String>::new()
        );
        assert_eq!(
            query::<Vec<String>>(&mut con, &["COMMAND", "DOCS"]),
            Vec::<String>::new()
        );
        let err = query_err(&mut con, &["FLUSHEVERYTHING", "now"]);
        assert!(err.contains("unknown command 'FLUSHEVERYTHING'"), "{err}");
        assert_eq!(query::<String>(&mut con, &["ping"]), "PONG");
    });
}

/// Pipelined batches of 1,000 commands (SETs, then GETs, then INCRs of one
/// counter) get 1,000 replies each, every one checked, in order.
#[test]
fn pipelined_batches_of_1000() {
    with_deadline(TEST_LIMIT, || {
        let server = Server::start();
        let mut con = server.client();
        let mut sets = redis::pipe();
        for i in 0..1000 {
            sets.cmd("SET")
                .arg(format!("key:{i}"))
                .arg(format!("value:{i}"));
        }
        let replies: Vec<String> = sets.query(&mut con).unwrap();
        assert_eq!(replies.len(), 1000);
        assert!(replies.iter().all(|r| r == "OK"), "{replies:?}");

        let mut gets = redis::pipe();
        for i in 0..1000 {
            gets.cmd("GET").arg(format!("key:{i}"));
        }
        gets.cmd("GET").arg("key:none");
        let values: Vec<Option<String>> = gets.query(&mut con).unwrap();
        assert_eq!(values.len(), 1001);
        for (i, v) in values[..1000].iter().enumerate() {
            assert_eq!(v.as_deref(), Some(format!("value:{i}").as_str()));
        }
        assert_eq!(values[1000], None);

        for batch in 0..3i64 {
            let mut incrs = redis::pipe();
            for _ in 0..1000 {
                incrs.cmd("INCR").arg("counter");
            }
            let counts: Vec<i64> = incrs.query(&mut con).unwrap();
            let expected: Vec<i64> = (batch * 1000 + 1..=batch * 1000 + 1000).collect();
            assert_eq!(counts, expected);
        }
    });
}

/// Sixteen clients at once, each pipelining INCRs of a shared counter and
/// SET/GETs of its own keys: every client gets its own replies, and no
/// increment is lost.
#[test]
fn concurrent_clients() {
    with_deadline(TEST_LIMIT, || {
        let server = Server::start();
        const CLIENTS: usize = 16;
        const ROUNDS: usize = 20;
        let threads: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let mut con = server.client();
                std::thread::spawn(move || {
                    for round in 0..ROUNDS {
                        let mut p = redis::pipe();
                        for i in 0..50 {
                            p.cmd("SET")
                                .arg(format!("c{c}:{i}"))
                                .arg(format!("{c}:{round}:{i}"))
                                .ignore();
                            p.cmd("INCR").arg("shared").ignore();
                            p.cmd("GET").arg(format!("c{c}:{i}"));
                        }
                        let got: Vec<String> = p.query(&mut con).unwrap();
                        let want: Vec<String> =
                            (0..50).map(|i| format!("{c}:{round}:{i}")).collect();
                        assert_eq!(got, want, "client {c} round {round}");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("client thread panicked");
        }
        let mut con = server.client();
        let total: i64 = query(&mut con, &["GET", "shared"]);
        assert_eq!(total, (CLIENTS * ROUNDS * 50) as i64);
    });
}

/// Inline commands (the form redis-benchmark uses for PING_INLINE) work,
/// mixed with RESP arrays in one write, case-insensitively.
#[test]
fn inline_commands_on_the_wire() {
    with_deadline(TEST_LIMIT, || {
        let server = Server::start();
        let mut s = server.raw();
        s.write_all(b"PING\r\n").unwrap();
        assert_eq!(read_n(&mut s, 7), "+PONG\r\n");
        s.write_all(b"set k v\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\nexists k k\nping\r\n")
            .unwrap();
        assert_eq!(
            read_n(&mut s, 5 + 7 + 4 + 7),
            "+OK\r\n$1\r\nv\r\n:2\r\n+PONG\r\n"
        );
    });
}

/// A command split into single-byte writes (so it reaches the server over
/// many reads) is answered once, correctly, followed by pipelined ones.
#[test]
fn command_split_across_reads() {
    with_deadline(TEST_LIMIT, || {
        let server = Server::start();
        let mut s = server.raw();
        let cmd = b"*3\r\n$3\r\nSET\r\n$5\r\nsplit\r\n$11\r\nhello world\r\nGET split\r\n";
        for b in cmd {
            s.write_all(&[*b]).unwrap();
        }
        assert_eq!(read_n(&mut s, 5 + 18), "+OK\r\n$11\r\nhello world\r\n");
    });
}

/// Malformed input of each kind gets a protocol error reply and then a
/// close, after the replies to the good commands before it; the server
/// keeps serving other connections.
#[test]
fn malformed_input_gets_an_error_and_close() {
    with_deadline(TEST_LIMIT, || {
        let server = Server::start();
        let cases: [(&[u8], &str); 7] = [
            (b"*1\r\n:5\r\n", "expected '$', got ':'"),
            (b"*-5\r\n", "invalid multibulk length"),
            (b"*1\r\n$-3\r\n", "invalid bulk length"),
            (b"*1\r\n$999999999999\r\n", "invalid bulk length"),
            (b"*99999999\r\n", "invalid multibulk length"),
            (b"*1\r\n$3\r\nabcXY", "expected CRLF"),
            (b"*x\r\n", "invalid multibulk length"),
        ];
        for (input, message) in cases {
            let mut s = server.raw();
            s.write_all(b"PING\r\n").unwrap();
            s.write_all(input).unwrap();
            let reply = read_to_close(&mut s);
            assert_eq!(
                reply,
                format!("+PONG\r\n-ERR Protocol error: {message}\r\n"),
                "for {:?}",
                input.escape_ascii().to_string()
            );
        }
        // An inline line that never ends is refused once it passes 64 KiB.
        let mut s = server.raw();
        s.write_all(&vec![b'a'; 70 * 1024]).unwrap();
        assert_eq!(
            read_to_close(&mut s),
            "-ERR Protocol error: too big inline request\r\n"
        );

        // Everyone else is still served.
        let mut con = server.client();
        assert_eq!(query::<String>(&mut con, &["PING"]), "PONG");
    });
}
