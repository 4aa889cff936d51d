//! Property ("fuzz") tests for the HTTP request parser and the connection
//! logic that drives it (issue 6, item 4: bad input).
//!
//! No fuzzing crate is used: a small deterministic PRNG (splitmix64) with a
//! fixed seed per property generates thousands of cases, so every failure
//! reproduces exactly. Each assertion message names the case number.
//!
//! The server loop in `main.rs` is modelled by [`Server`]: one input buffer
//! of capacity [`conn::READ_CAPACITY`] that a read fills only up to its
//! spare capacity (as `stream.read(input)` does), then [`Conn::process`],
//! and the connection ends on [`Next::Close`].

use crate::conn::{self, Conn, Next};
use crate::parser::{self, Status, MAX_HEAD};

#[path = "../test_rng.rs"]
mod test_rng;
use test_rng::Rng;

/// Cuts `len` bytes into chunk sizes: one byte at a time, small pieces,
/// large pieces, or a mix, so that every kind of split point is exercised.
fn chunk_sizes(rng: &mut Rng, len: usize) -> Vec<usize> {
    // Byte by byte is the costliest to run (a `process` call per byte), so
    // it is one mode in eight.
    let mode = match rng.below(8) {
        0 => 0,
        1..=3 => 1,
        4 | 5 => 2,
        _ => 3,
    };
    let mut sizes = Vec::new();
    let mut left = len;
    while left > 0 {
        let max = match mode {
            0 => 1,
            1 => 16,
            2 => len.max(1),
            _ => *rng.pick(&[1, 3, 64, 1024, 8192]),
        };
        let n = rng.range(1, max + 1).min(left);
        sizes.push(n);
        left -= n;
    }
    sizes
}

/// The tchar set of RFC 9110, for random method and header names.
const TCHARS: &[u8] =
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// Pieces of HTTP syntax, so that random input reaches deep parser states.
const DICTIONARY: &[&[u8]] = &[
    b"GET",
    b"HEAD",
    b"POST",
    b" ",
    b"/",
    b"/?q=1",
    b"HTTP/1.1",
    b"HTTP/1.0",
    b"HTTP/2.0",
    b"HTTP/1.",
    b"\r\n",
    b"\n",
    b"\r",
    b"\r\n\r\n",
    b":",
    b": ",
    b"\t",
    b"Host: a",
    b"Content-Length: ",
    b"Content-Length:",
    b"Connection: close",
    b"Connection: keep-alive",
    b"Transfer-Encoding: chunked",
    b"0",
    b"5",
    b"18446744073709551615",
    b"18446744073709551616",
    b"\x00",
    b"\x7f",
    b"\xff",
    b"GET / HTTP/1.1\r\n\r\n",
];

/// Random bytes of length `0..max_len` from one of several biased
/// alphabets: printable, CR/LF heavy, digits, HTTP dictionary, or binary.
fn arbitrary_bytes(rng: &mut Rng, max_len: usize) -> Vec<u8> {
    let len = rng.below(max_len);
    let mut out = Vec::with_capacity(len + 32);
    let alphabet = rng.below(6);
    while out.len() < len {
        match alphabet {
            0 => out.push(rng.range(0x20, 0x7f) as u8),
            1 => out.push(*rng.pick(b"\r\n\r\n\r\n \t:aZ/0")),
            2 => out.push(*rng.pick(b"0123456789-+ \r\n")),
            3 | 4 => out.extend_from_slice(rng.pick_bytes(DICTIONARY)),
            _ => out.push(rng.byte()),
        }
    }
    out
}

/// Applies a few random byte-level mutations (flip, insert, delete,
/// duplicate a range, truncate) to `bytes`.
fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    for _ in 0..rng.range(1, 5) {
        if bytes.is_empty() {
            bytes.push(rng.byte());
            continue;
        }
        let at = rng.below(bytes.len());
        match rng.below(6) {
            0 => bytes[at] = rng.byte(),
            1 => bytes[at] = *rng.pick(b"\r\n :\t\x00"),
            2 => bytes.insert(at, *rng.pick(b"\r\n :\t\x00\xff")),
            3 => {
                bytes.remove(at);
            }
            4 => {
                let end = rng.range(at, bytes.len().min(at + 64) + 1);
                let piece = bytes[at..end].to_vec();
                bytes.splice(at..at, piece);
            }
            _ => bytes.truncate(at),
        }
    }
}

/// One generated valid request and what the server must make of it.
struct Req {
    /// The request bytes: head, then body.
    bytes: Vec<u8>,
    /// The head's length (leading empty lines included).
    head_len: usize,
    /// Whether the connection stays open after it.
    keep_alive: bool,
    /// The status code of its answer.
    status: u16,
}

/// Appends a line ending: CRLF, or sometimes a bare LF.
fn eol(rng: &mut Rng, out: &mut Vec<u8>) {
    if rng.one_in(5) {
        out.push(b'\n');
    } else {
        out.extend_from_slice(b"\r\n");
    }
}

fn random_token(rng: &mut Rng, max: usize) -> Vec<u8> {
    (0..rng.range(1, max + 1))
        .map(|_| *rng.pick(TCHARS))
        .collect()
}

/// A random valid request: random method, target, version, headers,
/// `Connection` options and a `Content-Length` body.
fn gen_request(rng: &mut Rng) -> Req {
    let mut b = Vec::new();
    if rng.one_in(10) {
        for _ in 0..rng.range(1, 4) {
            eol(rng, &mut b);
        }
    }
    let method: Vec<u8> = if rng.one_in(4) {
        random_token(rng, 10)
    } else {
        rng.pick_bytes(&[&b"GET"[..], b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS"])
            .to_vec()
    };
    // The target: `/`, `/` with a query or fragment, or a random path of
    // any bytes a target may hold (above space, not DEL, UTF-8 or not).
    let mut target = b"/".to_vec();
    match rng.below(4) {
        0 => {}
        1 => {
            target.push(*rng.pick(b"?#"));
            for _ in 0..rng.below(20) {
                target.push(rng.range(0x21, 0x7f) as u8);
            }
        }
        _ => {
            for _ in 0..rng.range(1, 40) {
                let c = loop {
                    let c = rng.range(0x21, 0x100) as u8;
                    if c != 0x7f {
                        break c;
                    }
                };
                target.push(c);
            }
        }
    }
    let path_len = target
        .iter()
        .position(|&c| c == b'?' || c == b'#')
        .unwrap_or(target.len());
    let is_root = &target[..path_len] == b"/";
    let minor = *rng.pick(&[0u8, 1, 1, 1, 2, 9]);
    b.extend_from_slice(&method);
    b.push(b' ');
    b.extend_from_slice(&target);
    b.extend_from_slice(b" HTTP/1.");
    b.push(b'0' + minor);
    eol(rng, &mut b);

    let mut close = false;
    let mut keep_alive_asked = false;
    let mut body_len = None;
    let header_count = rng.below(8);
    for i in 0..header_count {
        match rng.below(6) {
            0 if body_len.is_none() => {
                let n = rng.below(300);
                body_len = Some(n);
                let name =
                    rng.pick_bytes(&[&b"Content-Length"[..], b"content-length", b"CONTENT-LENGTH"]);
                b.extend_from_slice(name);
                b.push(b':');
                b.extend_from_slice(rng.pick_bytes(&[&b""[..], b" ", b"\t", b"  "]));
                if rng.one_in(4) {
                    b.extend_from_slice(b"00");
                }
                b.extend_from_slice(n.to_string().as_bytes());
                b.extend_from_slice(rng.pick_bytes(&[&b""[..], b" ", b"\t "]));
            }
            1 => {
                let value = *rng.pick(&[
                    &b"close"[..],
                    b"keep-alive",
                    b"Keep-Alive, Upgrade",
                    b"upgrade",
                    b" CLOSE ",
                    b"foo,keep-alive , bar",
                ]);
                let lower = value.to_ascii_lowercase();
                for option in lower.split(|&c| c == b',') {
                    let option = option.trim_ascii();
                    close |= option == b"close";
                    keep_alive_asked |= option == b"keep-alive";
                }
                b.extend_from_slice(b"Connection: ");
                b.extend_from_slice(value);
            }
            _ => {
                let name = loop {
                    let name = if rng.one_in(2) {
                        rng.pick(&[
                            &b"Host"[..],
                            b"User-Agent",
                            b"Accept",
                            b"X-Empty",
                            b"Cookie",
                        ])
                        .to_vec()
                    } else {
                        random_token(rng, 16)
                    };
                    let lower = name.to_ascii_lowercase();
                    if lower != b"content-length"
                        && lower != b"transfer-encoding"
                        && lower != b"connection"
                    {
                        break name;
                    }
                };
                b.extend_from_slice(&name);
                b.push(b':');
                for _ in 0..rng.below(60) {
                    let c = match rng.below(10) {
                        0 => b'\t',
                        1 => rng.range(0x80, 0x100) as u8,
                        _ => rng.range(0x20, 0x7f) as u8,
                    };
                    b.push(c);
                }
            }
        }
        eol(rng, &mut b);
        // Sometimes repeat the same Content-Length, which is allowed.
        if i + 1 == header_count && rng.one_in(8) {
            if let Some(n) = body_len {
                b.extend_from_slice(format!("Content-Length: {n}").as_bytes());
                eol(rng, &mut b);
            }
        }
    }
    eol(rng, &mut b);
    let head_len = b.len();
    // The body: random bytes, often looking like requests, which must not
    // be taken for requests.
    for _ in 0..body_len.unwrap_or(0) {
        if rng.one_in(20) {
            b.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        } else {
            b.push(rng.byte());
        }
    }
    b.truncate(head_len + body_len.unwrap_or(0));
    let is_get = method == b"GET" || method == b"HEAD";
    let status = match (is_root, is_get) {
        (true, true) => 200,
        (true, false) => 405,
        (false, _) => 404,
    };
    Req {
        bytes: b,
        head_len,
        keep_alive: !close && (minor >= 1 || keep_alive_asked),
        status,
    }
}

/// A random pipelined stream of 1..8 valid requests.
fn gen_stream(rng: &mut Rng) -> Vec<Req> {
    (0..rng.range(1, 9)).map(|_| gen_request(rng)).collect()
}

fn concat(reqs: &[Req]) -> Vec<u8> {
    reqs.iter().flat_map(|r| r.bytes.iter().copied()).collect()
}

/// The server loop of `main.rs` without sockets: a fixed-capacity input
/// buffer that each read fills only up to its spare capacity.
struct Server {
    conn: Conn,
    input: Vec<u8>,
    out: Vec<u8>,
    closed: bool,
}

impl Server {
    fn new() -> Server {
        Server {
            conn: Conn::new(),
            input: Vec::with_capacity(conn::READ_CAPACITY),
            out: Vec::new(),
            closed: false,
        }
    }

    /// One read of at most `data.len()` bytes, then `process`; returns the
    /// bytes the read took (a full buffer would take none, which the real
    /// server would see as end of stream) and what this read produced.
    fn read(&mut self, data: &[u8]) -> (usize, Vec<u8>) {
        assert!(!self.closed, "read after close");
        let spare = self.input.capacity() - self.input.len();
        let n = data.len().min(spare);
        self.input.extend_from_slice(&data[..n]);
        let mut out = Vec::new();
        if self.conn.process(&mut self.input, &mut out) == Next::Close {
            self.closed = true;
        } else {
            // What `process` keeps is a partial head, below the limit, so the
            // next read always has room and the buffer never reallocates.
            assert!(self.input.len() < MAX_HEAD, "kept {}", self.input.len());
            assert_eq!(self.input.capacity(), conn::READ_CAPACITY);
        }
        self.out.extend_from_slice(&out);
        (n, out)
    }

    /// Feeds `data` in chunks of the given sizes until it is used up or the
    /// connection closes; returns every output byte and whether it closed.
    fn feed(mut self, data: &[u8], sizes: &[usize]) -> (Vec<u8>, bool) {
        let mut pos = 0;
        let mut sizes = sizes.iter().copied();
        while pos < data.len() && !self.closed {
            let want = sizes.next().unwrap_or(data.len() - pos);
            let (n, _) = self.read(&data[pos..pos + want.min(data.len() - pos)]);
            assert!(n > 0, "the input buffer was full");
            pos += n;
        }
        (self.out, self.closed)
    }
}

/// Feeds `data` to a fresh server in one read (as many as the buffer needs).
fn feed_whole(data: &[u8]) -> (Vec<u8>, bool) {
    Server::new().feed(data, &[])
}

/// Every response in `out` starts with a status line; returns the codes.
fn status_codes(out: &[u8]) -> Vec<u16> {
    let mut codes = Vec::new();
    let mut rest = out;
    while !rest.is_empty() {
        assert!(
            rest.starts_with(b"HTTP/1.1 "),
            "not a response: {:?}",
            String::from_utf8_lossy(rest)
        );
        let code = std::str::from_utf8(&rest[9..12]).unwrap().parse().unwrap();
        codes.push(code);
        let head_end = rest.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = std::str::from_utf8(&rest[..head_end]).unwrap();
        let len: usize = head
            .split("\r\n")
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        // A response to HEAD has no body: the next response (or the end)
        // follows the head at once. No body starts like a status line.
        let after = &rest[head_end..];
        let body = if after.is_empty() || after.starts_with(b"HTTP/1.1 ") {
            0
        } else {
            len
        };
        rest = &rest[head_end + body..];
    }
    codes
}

/// Proves: the parser never panics on arbitrary bytes (0..4 KiB, from
/// printable, CR/LF-heavy, digit, dictionary and binary alphabets, plus
/// mutated valid requests), and whatever it reports is self-consistent: a
/// complete head lies within the buffer and the limit, and the method and
/// target are a token and a control-free word.
#[test]
fn parser_never_panics_on_arbitrary_bytes() {
    let mut rng = Rng::new(0x4854_5450_0001);
    for case in 0..20_000 {
        let buf = if rng.one_in(3) {
            let mut b = concat(&gen_stream(&mut rng));
            mutate(&mut rng, &mut b);
            b
        } else {
            arbitrary_bytes(&mut rng, 4096)
        };
        match parser::parse(&buf) {
            Ok(Status::Complete(req)) => {
                assert!(
                    req.head_len <= buf.len() && req.head_len <= MAX_HEAD,
                    "case {case}"
                );
                assert!(!req.method.is_empty() && req.method.iter().all(|c| TCHARS.contains(c)));
                assert!(
                    !req.target.is_empty() && req.target.iter().all(|&c| c > b' ' && c != 0x7f)
                );
                assert!(req.minor_version <= 1);
            }
            Ok(Status::Partial) => assert!(buf.len() < MAX_HEAD, "case {case}"),
            Err(_) => {}
        }
    }
}

/// Proves: the connection logic never panics on arbitrary bytes split at
/// arbitrary points, every output is a well-formed response, and between
/// reads it keeps less than [`MAX_HEAD`] bytes in a buffer that never
/// grows (so the next read always has room).
#[test]
fn conn_never_panics_and_stays_bounded_on_arbitrary_bytes() {
    let mut rng = Rng::new(0x4854_5450_0002);
    for case in 0..10_000 {
        let data = if rng.one_in(3) {
            let mut b = concat(&gen_stream(&mut rng));
            mutate(&mut rng, &mut b);
            b
        } else {
            arbitrary_bytes(&mut rng, 4096)
        };
        let sizes = chunk_sizes(&mut rng, data.len());
        let (out, _) = Server::new().feed(&data, &sizes);
        let codes = status_codes(&out);
        assert!(
            codes
                .iter()
                .all(|c| [200, 404, 405, 400, 431, 501, 505].contains(c)),
            "case {case}: {codes:?}"
        );
    }
}

/// Proves: how a stream is split into reads does not matter. Pipelined
/// streams of random valid requests (random methods, targets, versions,
/// headers, `Connection` options and `Content-Length` bodies that look
/// like requests) cut into random chunks give byte for byte the output of
/// the whole stream, and that output has one response per request, with
/// the status the routes call for, up to the first request that closes.
#[test]
fn valid_streams_split_anywhere_answer_the_same() {
    let mut rng = Rng::new(0x4854_5450_0003);
    for case in 0..5_000 {
        let reqs = gen_stream(&mut rng);
        let data = concat(&reqs);
        let (whole, whole_closed) = feed_whole(&data);

        let answered = reqs
            .iter()
            .position(|r| !r.keep_alive)
            .map_or(reqs.len(), |i| i + 1);
        let expected: Vec<u16> = reqs[..answered].iter().map(|r| r.status).collect();
        assert_eq!(
            status_codes(&whole),
            expected,
            "case {case}: {:?}",
            String::from_utf8_lossy(&data)
        );
        assert_eq!(whole_closed, !reqs[answered - 1].keep_alive, "case {case}");

        let sizes = chunk_sizes(&mut rng, data.len());
        let (split, split_closed) = Server::new().feed(&data, &sizes);
        assert!(
            split == whole && split_closed == whole_closed,
            "case {case}: split {sizes:?} of {:?}",
            String::from_utf8_lossy(&data)
        );
    }
}

/// Proves: split-independence holds for invalid input too. Any stream
/// (arbitrary or mutated valid bytes, mutated oversize heads, arbitrary
/// bytes longer than [`MAX_HEAD`]) gives the same responses, error
/// included, and the same close decision however it is cut into reads.
#[test]
fn arbitrary_streams_split_anywhere_answer_the_same() {
    let mut rng = Rng::new(0x4854_5450_0004);
    for case in 0..8_000 {
        let data = match rng.below(8) {
            0..=3 => {
                let mut b = concat(&gen_stream(&mut rng));
                mutate(&mut rng, &mut b);
                b
            }
            4 => {
                let extra = rng.range(1, MAX_HEAD);
                let terminated = rng.one_in(2);
                let mut b = gen_oversize_head(&mut rng, extra, terminated);
                mutate(&mut rng, &mut b);
                b
            }
            5 => arbitrary_bytes(&mut rng, 3 * MAX_HEAD),
            _ => arbitrary_bytes(&mut rng, 4096),
        };
        let whole = feed_whole(&data);
        let sizes = chunk_sizes(&mut rng, data.len());
        let split = Server::new().feed(&data, &sizes);
        assert!(
            split == whole,
            "case {case}: split {sizes:?} of {:?}: {:?} vs whole {:?}",
            String::from_utf8_lossy(&data),
            String::from_utf8_lossy(&split.0),
            String::from_utf8_lossy(&whole.0)
        );
    }
}

/// Proves: a truncated request is never answered. For a random valid
/// pipelined stream cut at a random point, the output is exactly the
/// answers of the requests whose heads lie wholly before the cut (a body
/// still arriving does not hold its answer back), and the parser calls
/// every strict prefix of a head `Partial`.
#[test]
fn truncated_requests_are_not_answered() {
    let mut rng = Rng::new(0x4854_5450_0005);
    for case in 0..3_000 {
        let reqs = gen_stream(&mut rng);
        let data = concat(&reqs);
        let answers: Vec<(usize, Vec<u8>, bool)> = {
            let mut start = 0;
            reqs.iter()
                .map(|r| {
                    let head_end = start + r.head_len;
                    start += r.bytes.len();
                    let (out, closed) = feed_whole(&r.bytes);
                    (head_end, out, closed)
                })
                .collect()
        };
        for _ in 0..3 {
            let cut = rng.below(data.len() + 1);
            let mut expected = Vec::new();
            for (head_end, out, closed) in &answers {
                if *head_end > cut {
                    break;
                }
                expected.extend_from_slice(out);
                if *closed {
                    break;
                }
            }
            let sizes = chunk_sizes(&mut rng, cut);
            let (out, _) = Server::new().feed(&data[..cut], &sizes);
            assert!(
                out == expected,
                "case {case}: cut at {cut} of {:?}",
                String::from_utf8_lossy(&data)
            );
        }
        let first = &reqs[0];
        let cut = rng.below(first.head_len);
        assert_eq!(
            parser::parse(&first.bytes[..cut]),
            Ok(Status::Partial),
            "case {case}"
        );
    }
}

/// An oversize head of one of several shapes: a long target, many headers,
/// one long header value, or many leading empty lines; `extra` bytes past
/// the limit, and (if `terminated`) a proper end.
fn gen_oversize_head(rng: &mut Rng, extra: usize, terminated: bool) -> Vec<u8> {
    let total = MAX_HEAD + extra;
    let mut b = Vec::new();
    let shape = rng.below(4);
    if shape == 3 {
        while b.len() < total {
            eol(rng, &mut b);
        }
        return b;
    }
    b.extend_from_slice(b"GET /");
    if shape == 0 {
        while b.len() < total {
            b.push(*rng.pick(b"abcdefghij/?=&%0123456789"));
        }
        b.extend_from_slice(b" HTTP/1.1\r\n");
    } else {
        b.extend_from_slice(b" HTTP/1.1\r\n");
        while b.len() < total {
            b.extend_from_slice(b"X-Header-");
            b.extend_from_slice(&random_token(rng, 8));
            b.extend_from_slice(b": ");
            let n = if shape == 1 { rng.below(100) } else { total };
            for _ in 0..n {
                b.push(rng.range(0x20, 0x7f) as u8);
            }
            eol(rng, &mut b);
        }
    }
    if terminated {
        eol(rng, &mut b);
    }
    b
}

/// Proves: memory stays bounded under oversize heads. A request line, a
/// header section or a run of empty lines longer than [`MAX_HEAD`],
/// arriving in random chunk sizes (possibly after valid pipelined
/// requests), gets no answer while under the limit and a 431 with a close
/// on the very read that brings the buffered head to the limit; the
/// connection never keeps more than [`MAX_HEAD`] bytes between reads and
/// its buffer never grows (checked inside [`Server::read`]).
#[test]
fn oversize_heads_are_rejected_at_the_limit() {
    let mut rng = Rng::new(0x4854_5450_0006);
    for case in 0..300 {
        let mut prefix = Vec::new();
        let mut expected_prefix = Vec::new();
        if rng.one_in(2) {
            for r in gen_stream(&mut rng) {
                if r.keep_alive {
                    expected_prefix.extend_from_slice(&feed_whole(&r.bytes).0);
                    prefix.extend_from_slice(&r.bytes);
                }
            }
        }
        let extra = rng.range(1, 3 * MAX_HEAD);
        let terminated = rng.one_in(2);
        let head = gen_oversize_head(&mut rng, extra, terminated);
        let mut data = prefix.clone();
        data.extend_from_slice(&head);

        let mut server = Server::new();
        let mut pos = 0;
        // Random reads up to near the limit, byte by byte across it, then
        // random again.
        let near = prefix.len() + MAX_HEAD - rng.below(64);
        let mut sizes = Vec::new();
        let mut fed = 0;
        while fed < data.len() {
            let n = if fed + 128 > near && fed < near + 64 {
                1
            } else {
                rng.range(1, 2048).min(near.saturating_sub(fed).max(1))
            };
            sizes.push(n);
            fed += n;
        }
        let mut sizes = sizes.into_iter();
        while !server.closed {
            let size = sizes.next().expect("data ran out before the 431");
            let end = (pos + size).min(data.len());
            let (n, out) = server.read(&data[pos..end]);
            assert!(n > 0, "case {case}: the input buffer was full");
            pos += n;
            let head_bytes = pos.saturating_sub(prefix.len());
            if head_bytes < MAX_HEAD {
                assert!(
                    !server.closed,
                    "case {case}: closed at {head_bytes} head bytes"
                );
            } else {
                assert!(
                    server.closed,
                    "case {case}: open at {head_bytes} head bytes"
                );
                assert!(
                    out.ends_with(b"Connection: close\r\n\r\nRequest Header Fields Too Large\n"),
                    "case {case}: {:?}",
                    String::from_utf8_lossy(&out)
                );
            }
        }
        let all = &server.out;
        assert!(all.starts_with(&expected_prefix), "case {case}");
        assert_eq!(
            status_codes(&all[expected_prefix.len()..]),
            [431],
            "case {case}"
        );
    }
}

/// Proves: the limit is exact. A head of exactly [`MAX_HEAD`] bytes (or
/// one less) is answered normally however it is split, and one byte more
/// is a 431.
#[test]
fn head_limit_is_exact() {
    let mut rng = Rng::new(0x4854_5450_0007);
    for case in 0..40 {
        let len = MAX_HEAD - 1 + rng.below(3);
        let mut head = b"GET / HTTP/1.1".to_vec();
        eol(&mut rng, &mut head);
        head.extend_from_slice(b"X-Pad: ");
        let mut ending = Vec::new();
        eol(&mut rng, &mut ending);
        eol(&mut rng, &mut ending);
        head.resize(len - ending.len(), b'p');
        head.extend_from_slice(&ending);
        assert_eq!(head.len(), len);
        let sizes: Vec<usize> = (0..len).map(|_| rng.range(1, 300)).collect();
        let (out, closed) = Server::new().feed(&head, &sizes);
        let expected: &[u16] = if len <= MAX_HEAD { &[200] } else { &[431] };
        assert_eq!(status_codes(&out), expected, "case {case}: head of {len}");
        assert_eq!(closed, len > MAX_HEAD, "case {case}");
    }
}

/// Proves: resuming is the same as starting over. A parser fed a growing
/// buffer (random valid, mutated or arbitrary heads, up to twice
/// [`MAX_HEAD`], cut at random points) answers after a cut exactly what a
/// fresh parser answers for the same bytes (checked at some 40 random cuts
/// and at the one that completes or fails); and its total work is linear in the bytes (at most three looks
/// at each byte), whatever the cuts.
#[test]
fn resumed_parse_equals_fresh_parse_on_every_prefix() {
    let mut rng = Rng::new(0x4854_5450_0008);
    for case in 0..4_000 {
        let data = match rng.below(4) {
            0 => gen_request(&mut rng).bytes,
            1 => {
                let mut b = gen_request(&mut rng).bytes;
                mutate(&mut rng, &mut b);
                b
            }
            2 => {
                let extra = rng.range(1, MAX_HEAD);
                let terminated = rng.one_in(2);
                let mut b = gen_oversize_head(&mut rng, extra, terminated);
                if rng.one_in(2) {
                    mutate(&mut rng, &mut b);
                }
                b
            }
            _ => arbitrary_bytes(&mut rng, 4096),
        };
        let sizes = chunk_sizes(&mut rng, data.len());
        // A fresh parse of every prefix would make the test quadratic: check
        // some 40 cuts, and always the one that ends the parse.
        let every = sizes.len() / 40 + 1;
        let mut parser = parser::HeadParser::new();
        let mut end = 0;
        let mut work = 0;
        for size in sizes {
            end += size;
            let before = parser::work();
            let resumed = parser.parse(&data[..end]);
            work += parser::work() - before;
            if resumed == Ok(Status::Partial) && !rng.one_in(every) {
                continue;
            }
            let fresh = parser::parse(&data[..end]);
            assert!(
                resumed == fresh,
                "case {case}: after {end} bytes of {:?}: resumed {resumed:?}, fresh {fresh:?}",
                String::from_utf8_lossy(&data)
            );
            if resumed != Ok(Status::Partial) {
                break;
            }
        }
        assert!(
            work <= 3 * end.min(MAX_HEAD) + 3,
            "case {case}: {work} bytes looked at for {end}"
        );
    }
}

/// Proves the size rule: bytes past [`MAX_HEAD`] never change the answer.
/// For arbitrary and mutated oversize input, parsing the whole buffer
/// gives exactly the answer for its first [`MAX_HEAD`] bytes, and that
/// answer is never `Partial`.
#[test]
fn bytes_past_the_limit_never_count() {
    let mut rng = Rng::new(0x4854_5450_0009);
    for case in 0..2_000 {
        let extra = rng.range(1, 2 * MAX_HEAD);
        let mut data = if rng.one_in(4) {
            let mut b = arbitrary_bytes(&mut rng, 3 * MAX_HEAD);
            b.resize(MAX_HEAD + extra, b'x');
            b
        } else {
            let terminated = rng.one_in(2);
            gen_oversize_head(&mut rng, extra, terminated)
        };
        if rng.one_in(2) {
            mutate(&mut rng, &mut data);
        }
        if data.len() < MAX_HEAD {
            continue;
        }
        let whole = parser::parse(&data);
        assert_eq!(whole, parser::parse(&data[..MAX_HEAD]), "case {case}");
        assert_ne!(whole, Ok(Status::Partial), "case {case}");
    }
}

/// Proves the regression fixed for issue 6: an oversize head with a
/// malformed line (before the limit, across it, or past it) gets one
/// answer however it arrives: whole, byte by byte, or in random reads,
/// possibly after valid pipelined requests.
#[test]
fn malformed_oversize_heads_answer_the_same_however_split() {
    let mut rng = Rng::new(0x4854_5450_000a);
    for case in 0..300 {
        let mut data = Vec::new();
        if rng.one_in(2) {
            for r in gen_stream(&mut rng) {
                if r.keep_alive {
                    data.extend_from_slice(&r.bytes);
                }
            }
        }
        let prefix = data.len();
        let extra = rng.range(1, MAX_HEAD);
        let terminated = rng.one_in(2);
        let mut head = gen_oversize_head(&mut rng, extra, terminated);
        // Break one line near the limit: a byte that no line may hold, or
        // a space where a field name is.
        let at = (MAX_HEAD - 64 + rng.below(128)).min(head.len() - 1);
        head[at] = *rng.pick(b"\x00\x7f\r ");
        if rng.one_in(2) {
            let line = rng.pick_bytes(&[&b"\nbad line\n"[..], b"\r\n: x\r\n"]);
            head.splice(at..at, line.iter().copied());
        }
        data.extend_from_slice(&head);

        let whole = feed_whole(&data);
        let bytewise = Server::new().feed(&data, &vec![1; data.len()]);
        let sizes = chunk_sizes(&mut rng, data.len());
        let split = Server::new().feed(&data, &sizes);
        assert!(
            whole == bytewise && whole == split,
            "case {case}: head of {} after {prefix} bytes, broken at {at}: \
             whole {:?}, bytewise {:?}, split {:?}",
            head.len(),
            String::from_utf8_lossy(&whole.0),
            String::from_utf8_lossy(&bytewise.0),
            String::from_utf8_lossy(&split.0)
        );
        assert!(whole.1, "case {case}: not closed");
    }
}
