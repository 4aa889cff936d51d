//! The `http` example server against real clients: the `ureq` HTTP client
//! crate, and raw `std::net::TcpStream`s for the strict wire-level checks
//! (pipelining, split requests, connection reuse and closing).
//!
//! Each test starts the real example as a child process
//! (the example binary built by `integration_tests::example_binary`, run
//! with `127.0.0.1:<port>`), waits (bounded) until it accepts connections,
//! and kills it when the test ends, pass or fail.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use integration_tests::with_deadline;

/// How long one test may take, including building the example on first use.
const TEST_LIMIT: Duration = Duration::from_secs(300);

/// How long a raw client waits for bytes before failing.
const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `http` example; killed (and reaped) when dropped.
struct Server {
    /// Kept for its `Drop`, which kills the server.
    _server: integration_tests::ExampleServer,
    addr: SocketAddr,
}

impl Server {
    /// Starts the example on a free port and waits until it accepts.
    fn start() -> Server {
        let server = integration_tests::ExampleServer::start(env!("CARGO_TARGET_TMPDIR"), "http");
        Server {
            addr: server.addr,
            _server: server,
        }
    }

    /// The URL of `path` on this server.
    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A raw connection to this server.
    fn raw(&self) -> Raw {
        let stream = TcpStream::connect(self.addr).expect("connect");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Raw {
            stream,
            buf: Vec::new(),
        }
    }
}

/// An agent that reports 4xx/5xx as responses, not errors, and never hangs.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(IO_TIMEOUT))
        .build()
        .into()
}

/// One response read off a raw connection.
#[derive(Debug)]
struct Response {
    status: u16,
    /// The head (status line and header fields), lowercased.
    head: String,
    body: Vec<u8>,
}

/// A raw client connection that keeps bytes read past one response for the
/// next.
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    /// Reads more bytes into `buf`; false at end of stream.
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).expect("read (timed out?)");
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// Reads exactly one response (framed by its Content-Length).
    fn response(&mut self) -> Response {
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(
                self.fill(),
                "connection closed mid-response: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        };
        let head = String::from_utf8(self.buf[..head_end].to_vec())
            .expect("head is not UTF-8")
            .to_ascii_lowercase();
        let status = head
            .strip_prefix("http/1.1 ")
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line: {head:?}"));
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().expect("bad content-length"))
            .unwrap_or_else(|| panic!("no content-length: {head:?}"));
        while self.buf.len() < head_end + len {
            assert!(self.fill(), "connection closed mid-body");
        }
        let body = self.buf[head_end..head_end + len].to_vec();
        self.buf.drain(..head_end + len);
        Response { status, head, body }
    }

    /// Asserts that the server closes the connection with nothing more.
    fn expect_eof(&mut self) {
        let mut rest = Vec::new();
        self.stream
            .read_to_end(&mut rest)
            .expect("read to end (timed out: not closed?)");
        self.buf.extend_from_slice(&rest);
        assert!(
            self.buf.is_empty(),
            "unexpected bytes before close: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
    }
}

/// `GET /` through a real HTTP client gives 200, `text/plain` and exactly
/// `Hello, World!`.
#[test]
fn get_root_says_hello() {
    with_deadline(TEST_LIMIT, || {
        let server = Server::start();
        let mut resp = agent().get(&server.url("/")).call().expect("GET /");
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(
            resp.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("text/plain")
        );
        assert_eq!(resp.body_mut().read_to_string().unwrap(), "Hello, World!");
    });
}

/// An unknown path is a 404 to a real client, and the server keeps serving.
#[test]
fn unknown_path_is_404() {
    with_deadline(TEST_LIMIT, || {
        let server = Server::start();
        let agent = agent();
        let resp = agent.get(&server.url("/no/such/page")).call().unwrap();
        assert_eq!(resp.status().as_u16(), 404);
        let resp = agent.get(&server.url("/")).call().unwrap();
        assert_eq!(resp.status().as_u16(), 200);
    });
}

/// Keep-alive: a pooling client's sequential requests all succeed, and on
/// the wire one connection answers many requests in turn (each response
/// arrives before the next request is sent, with no `Connection: close`),
/// including after a request with a body.
#[test]
fn keep_alive_serves_many_requests_per_connection() {
    with_deadline(TEST_LIMIT, || {
        let server = Server::start();
        let agent = agent();
        for _ in 0..50 {
            let mut resp = agent.get(&server.url("/")).call().unwrap();
            assert_eq!(resp.status().as_u16(), 200);
            assert_eq!(resp.body_mut().read_to_string().unwrap(), "Hello, World!");
        }

        let mut raw = server.raw();
        for i in 0..20 {
            let req = if i % 5 == 4 {
                "POST /form HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello=world"
            } else {
                "GET / HTTP/1.1\r\nHost: t\r\n\r\n"
            };
            raw.stream.write_all(req.as_bytes()).unwrap();
            let resp = raw.response();
            assert!(!resp.head.contains("connection: close"), "{}", resp.head);
            if i % 5 == 4 {
                assert_eq!(resp.status, 404);
            } else {
                assert_eq!(resp.status, 200);
                assert_eq!(resp.body, b"Hello, World!");
            }
        }
    });
}

/// 100 clients on 100 threads, released together, each get a 200.
#[test]
fn hundred_concurrent_requests() {
    with_deadline(TEST_LIMIT, || {
        let server = Server::start();
        let url = server.url("/");
        let barrier = Arc::new(Barrier::new(100));
        let threads: Vec<_> = (0..100)
            .map(|_| {
                let url = url.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let agent = agent();
                    barrier.wait();
                    let mut resp = agent.get(&url).call().expect("GET /");
                    (
                        resp.status().as_u16(),
                        resp.body_mut().read_to_string().unwrap(),
                    )
                })
            })
            .collect();
        for t in threads {
            let (status, body) = t.join().expect("client thread panicked");
            assert_eq!(status, 200);
            assert_eq!(body, "Hello, World!");
        }
    });
}

/// Pipelining: three requests in one write get three responses, in request
/// order, and the connection stays usable.
#[test]
fn pipelined_requests_answered_in_order() {
    with_deadline(TEST_LIMIT, || {
        let server = Server::start();
        let mut raw = server.raw();
        raw.stream
            .write_all(
                b"GET / HTTP/1.1\r\nHost: t\r\n\r\n\
                  GET /missing HTTP/1.1\r\nHost: t\r\n\r\n\
                  HEAD / HTTP/1.1\r\nHost: t\r\n\r\n",
            )
            .unwrap();
        let first = raw.response();
        assert_eq!(
            (first.status, first.body.as_slice()),
            (200, &b"Hello, World!"[..])
        );
        let second = raw.response();
        assert_eq!(second.status, 404);
        // HEAD: a Content-Length of 13 but no body, so read the head only.
        let head_end = loop {
            if let Some(i) = raw.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(raw.fill(), "closed before the third response");
        };
        assert!(raw.buf.starts_with(b"HTTP/1.1 200 OK\r\n"));
        raw.buf.drain(..head_end);
        assert!(raw.buf.is_empty());

        raw.stream
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        assert_eq!(raw.response().status, 200);
    });
}

/// A request sent one byte per write (each its own segment, with a pause)
/// is reassembled and answered once, and the connection stays open.
#[test]
fn request_split_into_single_bytes() {
    with_deadline(TEST_LIMIT, || {
        let server = Server::start();
        let mut raw = server.raw();
        for _ in 0..2 {
            for b in b"GET / HTTP/1.1\r\nHost: split\r\n\r\n" {
                raw.stream.write_all(&[*b]).unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
            let resp = raw.response();
            assert_eq!(resp.status, 200);
            assert_eq!(resp.body, b"Hello, World!");
        }
    });
}

/// A malformed request line gets 400 with `Connection: close`, and then
/// the server closes the connection (even though a valid request follows).
#[test]
fn malformed_request_is_400_and_closed() {
    with_deadline(TEST_LIMIT, || {
        let server = Server::start();
        let mut raw = server.raw();
        raw.stream
            .write_all(b"THIS IS NOT HTTP\r\n\r\nGET / HTTP/1.1\r\n\r\n")
            .unwrap();
        let resp = raw.response();
        assert_eq!(resp.status, 400);
        assert!(resp.head.contains("connection: close"), "{}", resp.head);
        raw.expect_eof();

        // A bad header field, after a good request on the same connection.
        let mut raw = server.raw();
        raw.stream
            .write_all(b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nBad Header: x\r\n\r\n")
            .unwrap();
        assert_eq!(raw.response().status, 200);
        assert_eq!(raw.response().status, 400);
        raw.expect_eof();
    });
}

/// Closing rules: `Connection: close` is answered and then closed, HTTP/1.0
/// closes by default but stays open when it asks for keep-alive, an
/// oversize head is 431 and closed, and a chunked body is 501 and closed.
#[test]
fn close_rules() {
    with_deadline(TEST_LIMIT, || {
        let server = Server::start();

        let mut raw = server.raw();
        raw.stream
            .write_all(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let resp = raw.response();
        assert_eq!(resp.status, 200);
        assert!(resp.head.contains("connection: close"));
        raw.expect_eof();

        let mut raw = server.raw();
        raw.stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!(raw.response().status, 200);
        raw.expect_eof();

        let mut raw = server.raw();
        for _ in 0..3 {
            raw.stream
                .write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                .unwrap();
            let resp = raw.response();
            assert_eq!(resp.status, 200);
            assert!(resp.head.contains("connection: keep-alive"));
        }

        let mut raw = server.raw();
        let mut big = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        big.resize(20_000, b'a');
        big.extend_from_slice(b"\r\n\r\n");
        raw.stream.write_all(&big).unwrap();
        assert_eq!(raw.response().status, 431);
        raw.expect_eof();

        let mut raw = server.raw();
        raw.stream
            .write_all(
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            )
            .unwrap();
        assert_eq!(raw.response().status, 501);
        raw.expect_eof();
    });
}
