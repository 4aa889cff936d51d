//! The I/O-free half of an HTTP/1.1 connection: bytes in, responses out.
//!
//! A server reads into one input buffer, calls [`Conn::process`], and writes
//! the output buffer with one write. Keeping the protocol here, apart from
//! the I/O, lets the io_uring example and the tokio benchmark peer
//! (`bench/src/bin/tokio_http.rs`, which includes this file) answer byte for
//! byte alike, and lets the unit tests drive it without sockets.
//!
//! Routes: `GET /` (and `HEAD /`) answer `Hello, World!` as `text/plain`;
//! other methods on `/` get 405; every other path gets 404. A query string
//! is ignored. Request bodies framed by `Content-Length` are read and
//! discarded, even when they span several reads. Parse errors get their
//! status (400, 431, 501 for `Transfer-Encoding`, 505) with
//! `Connection: close`, and the connection closes.
//!
//! A request head that arrives over several reads is parsed incrementally
//! (the connection keeps a [`HeadParser`]), so a client trickling its head
//! in a byte at a time costs work linear in the head's size; and the answer
//! to any byte stream, error or not, does not depend on how it is split
//! into reads.

use crate::parser::{self, HeadParser, Request, Status};

/// The capacity of a connection's input buffer. A partial request head is at
/// most [`parser::MAX_HEAD`] bytes, so after [`Conn::process`] at least
/// `READ_CAPACITY - MAX_HEAD` bytes are always free for the next read.
pub(crate) const READ_CAPACITY: usize = 2 * parser::MAX_HEAD;

/// The initial capacity of a connection's output buffer; it grows (once) if
/// a batch of pipelined responses needs more.
pub(crate) const WRITE_CAPACITY: usize = 4096;

/// The body of the `GET /` answer.
pub(crate) const HELLO: &[u8] = b"Hello, World!";

/// What the server does with the connection after writing the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Read the next bytes.
    Read,
    /// Write what was produced, then close: the client asked for it or the
    /// stream can no longer be trusted.
    Close,
}

/// The state a connection carries between reads.
#[derive(Debug, Default)]
pub(crate) struct Conn {
    /// Body bytes of the last request that have not arrived yet and will be
    /// discarded when they do.
    skip: u64,
    /// How far the parse of the partial head at the start of the input got.
    head: HeadParser,
    /// The server is shutting down: the next response says
    /// `Connection: close` and ends the connection, whatever the request
    /// asked for.
    pub(crate) closing: bool,
}

impl Conn {
    /// A connection that has seen no bytes yet.
    pub(crate) fn new() -> Conn {
        Conn {
            skip: 0,
            head: HeadParser::new(),
            closing: false,
        }
    }

    /// Answers every complete request at the start of `input`, appending the
    /// responses to `out` in order, and removes the bytes it used from
    /// `input` (a partial request stays for the next read to complete).
    pub(crate) fn process(&mut self, input: &mut Vec<u8>, out: &mut Vec<u8>) -> Next {
        let mut pos = 0;
        let next = loop {
            if self.skip > 0 {
                let n = self.skip.min((input.len() - pos) as u64);
                // `n` is at most the bytes left in `input`, so it fits a usize.
                pos += n as usize;
                self.skip -= n;
                if self.skip > 0 {
                    break Next::Read;
                }
            }
            match self.head.parse(&input[pos..]) {
                Ok(Status::Partial) => break Next::Read,
                Ok(Status::Complete(mut req)) => {
                    req.keep_alive &= !self.closing;
                    respond(&req, out);
                    pos += req.head_len;
                    self.skip = req.content_length;
                    if !req.keep_alive {
                        break Next::Close;
                    }
                }
                Err(e) => {
                    respond_error(e, out);
                    break Next::Close;
                }
            }
        };
        if pos == input.len() {
            input.clear();
        } else if pos > 0 {
            // Moves the partial head to the front: at most once per request,
            // since a read that completes nothing consumes nothing.
            input.drain(..pos);
        }
        next
    }
}

/// Appends the response to a parsed request.
fn respond(req: &Request<'_>, out: &mut Vec<u8>) {
    let head = req.method == b"HEAD";
    let (status, allow, body): (&[u8], &[u8], &[u8]) = if req.path() == b"/" {
        if req.method == b"GET" || head {
            (b"200 OK", b"", HELLO)
        } else {
            (
                b"405 Method Not Allowed",
                b"Allow: GET, HEAD\r\n",
                b"Method Not Allowed\n",
            )
        }
    } else {
        (b"404 Not Found", b"", b"Not Found\n")
    };
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status);
    out.extend_from_slice(b"\r\nContent-Type: text/plain\r\nContent-Length: ");
    push_decimal(out, body.len());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(allow);
    if !req.keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if req.minor_version == 0 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head {
        out.extend_from_slice(body);
    }
}

/// Appends the response to a request that could not be parsed.
fn respond_error(e: parser::Error, out: &mut Vec<u8>) {
    let (code, reason) = e.status();
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, usize::from(code));
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\nContent-Type: text/plain\r\nContent-Length: ");
    push_decimal(out, reason.len() + 1);
    out.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    out.extend_from_slice(reason.as_bytes());
    out.push(b'\n');
}

/// Appends `n` in decimal without going through `fmt` (no allocation).
fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str =
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";

    /// Feeds `chunks` one read at a time and returns the output text of each
    /// read and the decision after the last.
    fn run(chunks: &[&[u8]]) -> (Vec<String>, Next) {
        let mut conn = Conn::new();
        let mut input = Vec::new();
        let mut outs = Vec::new();
        let mut next = Next::Read;
        for chunk in chunks {
            input.extend_from_slice(chunk);
            let mut out = Vec::new();
            next = conn.process(&mut input, &mut out);
            outs.push(String::from_utf8(out).unwrap());
        }
        (outs, next)
    }

    #[test]
    fn hello() {
        let (outs, next) = run(&[b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"]);
        assert_eq!(outs, [OK]);
        assert_eq!(next, Next::Read);
    }

    #[test]
    fn query_is_ignored_and_unknown_paths_are_404() {
        let (outs, _) = run(&[b"GET /?a=b HTTP/1.1\r\n\r\n"]);
        assert_eq!(outs, [OK]);
        let (outs, next) = run(&[b"GET /nope HTTP/1.1\r\n\r\n"]);
        assert_eq!(
            outs,
            ["HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nNot Found\n"]
        );
        assert_eq!(next, Next::Read);
    }

    #[test]
    fn head_has_no_body_and_other_methods_are_405() {
        let (outs, _) = run(&[b"HEAD / HTTP/1.1\r\n\r\n"]);
        assert_eq!(
            outs,
            ["HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n"]
        );
        let (outs, _) = run(&[b"DELETE / HTTP/1.1\r\n\r\n"]);
        assert!(outs[0].starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(outs[0].contains("\r\nAllow: GET, HEAD\r\n"));
    }

    #[test]
    fn pipelined_requests_answered_in_order_in_one_batch() {
        let (outs, next) =
            run(&[b"GET / HTTP/1.1\r\n\r\nGET /x HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n"]);
        assert_eq!(outs.len(), 1);
        let out = &outs[0];
        let first = out.find("200 OK").unwrap();
        let second = out.find("404 Not Found").unwrap();
        let third = out.rfind("200 OK").unwrap();
        assert!(first < second && second < third);
        assert_eq!(out.matches("HTTP/1.1 ").count(), 3);
        assert_eq!(next, Next::Read);
    }

    #[test]
    fn request_split_byte_by_byte() {
        let req = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let chunks: Vec<&[u8]> = req.chunks(1).collect();
        let (outs, next) = run(&chunks);
        assert!(outs[..outs.len() - 1].iter().all(String::is_empty));
        assert_eq!(outs.last().unwrap(), OK);
        assert_eq!(next, Next::Read);
    }

    #[test]
    fn body_in_the_same_read_is_consumed() {
        let (outs, _) =
            run(&[b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nGET /GET / HTTP/1.1\r\n\r\n"]);
        // The body "GET /" is not mistaken for a request.
        assert_eq!(outs[0].matches("HTTP/1.1 ").count(), 2);
        assert!(outs[0].ends_with(OK));
    }

    #[test]
    fn body_spanning_reads_is_consumed() {
        let (outs, next) = run(&[
            b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nab",
            b"cdef",
            b"ghijGET / HTTP/1.1\r\n",
            b"\r\n",
        ]);
        assert!(outs[0].starts_with("HTTP/1.1 405"));
        assert_eq!(outs[1], "");
        assert_eq!(outs[2], "");
        assert_eq!(outs[3], OK);
        assert_eq!(next, Next::Read);
    }

    #[test]
    fn connection_close_is_honoured_and_stops_the_batch() {
        let (outs, next) =
            run(&[b"GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n"]);
        assert_eq!(
            outs,
            ["HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nConnection: close\r\n\r\nHello, World!"]
        );
        assert_eq!(next, Next::Close);
    }

    #[test]
    fn http_1_0_closes_unless_keep_alive_asked() {
        let (outs, next) = run(&[b"GET / HTTP/1.0\r\n\r\n"]);
        assert!(outs[0].contains("Connection: close\r\n"));
        assert_eq!(next, Next::Close);
        let (outs, next) = run(&[b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"]);
        assert!(outs[0].contains("Connection: keep-alive\r\n"));
        assert!(outs[0].ends_with("Hello, World!"));
        assert_eq!(next, Next::Read);
    }

    #[test]
    fn malformed_request_is_400_and_close_after_earlier_answers() {
        let (outs, next) = run(&[b"GET / HTTP/1.1\r\n\r\nBLAH\r\n\r\nGET / HTTP/1.1\r\n\r\n"]);
        let expected = format!(
            "{OK}HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\
             Connection: close\r\n\r\nBad Request\n"
        );
        assert_eq!(outs, [expected]);
        assert_eq!(next, Next::Close);
    }

    #[test]
    fn oversize_head_is_431_and_close() {
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(parser::MAX_HEAD + 1, b'a');
        let (outs, next) = run(&[&big]);
        assert!(outs[0].starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert_eq!(next, Next::Close);
    }

    #[test]
    fn chunked_body_is_501_and_close() {
        let (outs, next) = run(&[b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"]);
        assert!(outs[0].starts_with("HTTP/1.1 501 Not Implemented\r\n"));
        assert_eq!(next, Next::Close);
    }

    #[test]
    fn input_keeps_only_the_unparsed_tail() {
        let mut conn = Conn::new();
        let mut input = b"GET / HTTP/1.1\r\n\r\nGET /par".to_vec();
        let mut out = Vec::new();
        assert_eq!(conn.process(&mut input, &mut out), Next::Read);
        assert_eq!(input, b"GET /par");
    }

    /// A head of almost [`parser::MAX_HEAD`] bytes: a request line, many
    /// fields, a body and a second request behind it.
    fn big_request() -> (Vec<u8>, usize) {
        let mut req = b"POST /?x=1 HTTP/1.1\r\nHost: a\r\n".to_vec();
        let mut i = 0;
        while req.len() < parser::MAX_HEAD - 200 {
            req.extend_from_slice(format!("X-Field-{i}: value {i}\tof the field\r\n").as_bytes());
            i += 1;
        }
        req.extend_from_slice(b"Content-Length: 3\r\nConnection: keep-alive\r\n\r\n");
        let head_len = req.len();
        req.extend_from_slice(b"abcGET / HTTP/1.1\r\n\r\n");
        (req, head_len)
    }

    /// Regression (issue 6): a head trickling in one byte per read is
    /// parsed correctly, and with work linear in its size. The connection
    /// used to re-parse the buffered head from its start on every read:
    /// about `n * n / 2` bytes looked at for an `n`-byte head (some 32
    /// million here), against a few times `n` now.
    #[test]
    fn large_head_one_byte_at_a_time_is_linear_work() {
        let (req, head_len) = big_request();
        let before = parser::work();
        let chunks: Vec<&[u8]> = req.chunks(1).collect();
        let (outs, next) = run(&chunks);
        let work = parser::work() - before;
        assert!(
            work <= 4 * req.len(),
            "{work} bytes looked at for a stream of {}",
            req.len()
        );
        for (i, out) in outs.iter().enumerate() {
            if i == head_len - 1 {
                assert!(
                    out.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
                    "{out}"
                );
            } else if i == req.len() - 1 {
                assert_eq!(out, OK);
            } else {
                assert_eq!(out, "", "answer after {} bytes", i + 1);
            }
        }
        assert_eq!(next, Next::Read);
        // The same bytes in one read give the same answers.
        let (whole, _) = run(&[&req]);
        assert_eq!(whole[0], outs.concat());
    }

    /// The answer and the close decision for `data` fed in chunks of `size`.
    /// (The connection stops reading at a close, as the server does.)
    fn answer(data: &[u8], size: usize) -> (String, Next) {
        let mut conn = Conn::new();
        let mut input = Vec::new();
        let mut out = Vec::new();
        let mut next = Next::Read;
        for chunk in data.chunks(size) {
            input.extend_from_slice(chunk);
            next = conn.process(&mut input, &mut out);
            if next == Next::Close {
                break;
            }
        }
        (String::from_utf8(out).unwrap(), next)
    }

    /// Regression (issue 6): a head over the limit whose request line or a
    /// field past the limit is malformed was 400 when it arrived in one
    /// read and 431 when it arrived in small ones. Only the first
    /// `MAX_HEAD` bytes count now: a head that does not end within them is
    /// 431 unless they already hold a malformed line (400).
    #[test]
    fn oversize_malformed_head_gets_one_answer_however_split() {
        let max = parser::MAX_HEAD;
        // A request line longer than the limit, malformed at its end.
        let mut long_line = b"GET /".to_vec();
        long_line.resize(max + 100, b'a');
        long_line.extend_from_slice(b" HTTPX/1.1\r\n\r\n");
        // A malformed field straddling the limit.
        let mut straddling = b"GET / HTTP/1.1\r\nX: ".to_vec();
        straddling.resize(max - 10, b'b');
        straddling.extend_from_slice(b"\r\nBad Field Without Colon\r\n\r\n");
        // A malformed field wholly past the limit.
        let mut past = b"GET / HTTP/1.1\r\nX: ".to_vec();
        past.resize(max + 10, b'c');
        past.extend_from_slice(b"\r\nno colon\r\nTransfer-Encoding: chunked\r\n\r\n");
        // Junk in the method past the limit.
        let mut junk = vec![b'G'; max + 10];
        junk.push(0);
        // A malformed field well within the limit, then a lot more.
        let mut early = b"GET / HTTP/1.1\r\nno colon\r\nX: ".to_vec();
        early.resize(max + 1000, b'd');
        early.extend_from_slice(b"\r\n\r\n");
        let cases: [(&[u8], u16); 5] = [
            (&long_line, 431),
            (&straddling, 431),
            (&past, 431),
            (&junk, 431),
            (&early, 400),
        ];
        for (i, (data, code)) in cases.into_iter().enumerate() {
            let whole = answer(data, data.len());
            assert!(
                whole.0.starts_with(&format!("HTTP/1.1 {code} ")),
                "case {i}: {}",
                whole.0
            );
            assert_eq!(whole.1, Next::Close, "case {i}");
            for size in [1, 7, 1000, max - 1, max, max + 1] {
                assert_eq!(answer(data, size), whole, "case {i} in chunks of {size}");
            }
        }
    }

    #[test]
    fn closing_answers_one_request_with_connection_close() {
        let mut conn = Conn::new();
        conn.closing = true;
        let mut input = b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n".to_vec();
        let mut out = Vec::new();
        assert_eq!(conn.process(&mut input, &mut out), Next::Close);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nConnection: close\r\n\r\nHello, World!"
        );
        // An HTTP/1.0 keep-alive request is closed too.
        let mut conn = Conn::new();
        conn.closing = true;
        let mut input = b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".to_vec();
        let mut out = Vec::new();
        assert_eq!(conn.process(&mut input, &mut out), Next::Close);
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("Connection: close\r\n"));
    }

    #[test]
    fn decimal() {
        for n in [0usize, 7, 10, 13, 4096, usize::MAX] {
            let mut v = Vec::new();
            push_decimal(&mut v, n);
            assert_eq!(v, n.to_string().as_bytes());
        }
    }
}
