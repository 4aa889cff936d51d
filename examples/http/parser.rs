//! An allocation-free, incremental HTTP/1.x request-head parser.
//!
//! [`HeadParser::parse`] looks at the start of a byte buffer and says whether
//! it holds a complete request head (request line, header fields and the
//! empty line), needs more bytes, or is malformed. It borrows the method and
//! target from the buffer, so nothing is copied or allocated per request.
//!
//! The parser is resumable. While a head has not fully arrived it remembers
//! how far it got: the complete lines it has already checked (and what they
//! said), and how much of the current line it has scanned for its end. The
//! next call, given the same bytes and more, goes on from there, so a head
//! that trickles in one byte per read costs time linear in its size, not
//! quadratic.
//!
//! What it accepts, following RFC 9112 with the usual leniencies:
//!
//! - Empty lines before the request line are skipped (RFC 9112 §2.2).
//! - Lines end in CRLF; a bare LF is accepted too, a bare CR is not.
//! - The request line is `method SP target SP HTTP/1.x`; the method is a
//!   token, the target has no controls or spaces. `HTTP/1.0` and `HTTP/1.1`
//!   (and higher 1.x minors, treated as 1.1) are spoken; another well-formed
//!   major version is [`Error::Version`].
//! - A header field is `name ":" OWS value OWS`; the name is a token with no
//!   space before the colon, the value has no controls except tab. Obsolete
//!   line folding is rejected.
//! - `Content-Length` must be plain digits that fit in a `u64`; repeated
//!   fields must agree.
//! - Any `Transfer-Encoding` is [`Error::TransferEncoding`] (the server
//!   answers 501 and closes): chunked request bodies are not supported, and
//!   a request with both it and `Content-Length` would be ambiguous anyway.
//! - `Connection` is a comma-separated, case-insensitive list; `close` and
//!   `keep-alive` decide [`Request::keep_alive`] with the HTTP/1.1 default of
//!   persistence and the HTTP/1.0 default of closing.
//!
//! Errors are reported as soon as the bytes prove them: a line when it is
//! complete, and the method of the request line byte by byte (so binary
//! junk such as a TLS hello is refused before any line end).
//!
//! The size limit: the head (from the buffer's start to the end of the empty
//! line) may be at most [`MAX_HEAD`] bytes, and only the first [`MAX_HEAD`]
//! bytes of the buffer are ever looked at. If no head ends within them the
//! answer is [`Error::HeadTooLarge`], unless something within them is
//! already malformed, which is then the answer. Since bytes past the limit
//! never count, a head over the limit gets the same answer however its bytes
//! are split into reads (all at once, or one at a time).

use std::ops::Range;

/// The largest request head accepted, in bytes (8 KiB).
pub(crate) const MAX_HEAD: usize = 8 * 1024;

/// A parsed request head, borrowing from the buffer it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request<'a> {
    /// The method, exactly as sent (methods are case-sensitive).
    pub method: &'a [u8],
    /// The request target, exactly as sent (path and query).
    pub target: &'a [u8],
    /// The minor HTTP version: `0` for HTTP/1.0, `1` for HTTP/1.1 and later.
    pub minor_version: u8,
    /// Whether the connection stays open after this request, from the
    /// version's default and the `Connection` header.
    pub keep_alive: bool,
    /// The body length from `Content-Length` (`0` when absent).
    pub content_length: u64,
    /// The number of bytes the head took at the start of the buffer; the
    /// body (if any) starts there.
    pub head_len: usize,
}

impl Request<'_> {
    /// The target's path: the target up to a `?` or `#`.
    pub(crate) fn path(&self) -> &[u8] {
        match self.target.iter().position(|&b| b == b'?' || b == b'#') {
            Some(i) => &self.target[..i],
            None => self.target,
        }
    }
}

/// What [`HeadParser::parse`] found at the start of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Status<'a> {
    /// A complete request head; its body follows it in the stream.
    Complete(Request<'a>),
    /// The head is not complete yet (and not known to be bad): read more.
    Partial,
}

/// Why a request cannot be served; the connection is closed after the
/// error response because the stream's framing can no longer be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Error {
    /// Not valid HTTP/1.x syntax (answered with 400).
    BadRequest,
    /// No head ends within the first [`MAX_HEAD`] bytes (answered with 431).
    HeadTooLarge,
    /// The request carries a `Transfer-Encoding` (answered with 501).
    TransferEncoding,
    /// A well-formed HTTP version other than 1.x (answered with 505).
    Version,
}

impl Error {
    /// The status code and reason phrase that answer this error.
    pub(crate) fn status(self) -> (u16, &'static str) {
        match self {
            Error::BadRequest => (400, "Bad Request"),
            Error::HeadTooLarge => (431, "Request Header Fields Too Large"),
            Error::TransferEncoding => (501, "Not Implemented"),
            Error::Version => (505, "HTTP Version Not Supported"),
        }
    }
}

/// The parts of a parsed request line, as ranges of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RequestLine {
    method: Range<usize>,
    target: Range<usize>,
    minor_version: u8,
}

/// A resumable parser of one request head at a time; a connection keeps one
/// for the head it is receiving.
///
/// Call [`parse`](HeadParser::parse) with the buffered bytes starting at the
/// head's first byte. While it returns [`Status::Partial`], call it again
/// once more bytes have arrived, with the same start: the buffer may move or
/// grow, but the bytes already passed must stay the same. After a complete
/// head or an error it starts over, and the next call parses a new head.
#[derive(Debug, Clone, Default)]
pub(crate) struct HeadParser {
    /// Where the current, incomplete line starts; everything before it is
    /// complete lines already checked.
    line_start: usize,
    /// How far the buffer has been scanned for the current line's LF.
    scanned: usize,
    /// Whether the current line, while it is the request line, has had a
    /// space: the method ends there, and only its bytes are checked before
    /// the line ends.
    method_ended: bool,
    /// The request line, once it is complete.
    request_line: Option<RequestLine>,
    /// A `Connection` field has said `close`.
    close: bool,
    /// A `Connection` field has said `keep-alive`.
    keep_alive_asked: bool,
    /// The `Content-Length`, once a field has given it.
    content_length: Option<u64>,
}

impl HeadParser {
    /// A parser waiting for the first byte of a head.
    pub(crate) fn new() -> HeadParser {
        HeadParser::default()
    }

    /// Parses (or goes on parsing) the request head at the start of `buf`.
    ///
    /// Returns [`Status::Partial`] when `buf` is a strict prefix of a
    /// possibly valid head shorter than [`MAX_HEAD`], a complete request,
    /// or an error when the head is malformed or too large (see the module
    /// documentation for the exact rules).
    pub(crate) fn parse<'a>(&mut self, buf: &'a [u8]) -> Result<Status<'a>, Error> {
        // Only the first MAX_HEAD bytes can hold an acceptable head; never
        // looking further makes the answer independent of how many bytes
        // past the limit have arrived.
        let view = &buf[..buf.len().min(MAX_HEAD)];
        if self.scanned > view.len() {
            // Not the bytes of the previous call: start over rather than
            // trust positions that are no longer in the buffer.
            *self = HeadParser::default();
        }
        let result = self.resume(view);
        if !matches!(result, Ok(Status::Partial)) {
            *self = HeadParser::default();
        }
        result
    }

    /// Goes on from where the last call stopped, one line at a time.
    fn resume<'a>(&mut self, view: &'a [u8]) -> Result<Status<'a>, Error> {
        loop {
            let from = self.scanned;
            let Some(lf) = view[from..].iter().position(|&b| b == b'\n') else {
                count_work(view.len() - from);
                if self.request_line.is_none() {
                    let line = &view[self.line_start..];
                    self.check_method_so_far(line, from - self.line_start)?;
                }
                self.scanned = view.len();
                // An incomplete head at the limit can only grow past it.
                return if view.len() >= MAX_HEAD {
                    Err(Error::HeadTooLarge)
                } else {
                    Ok(Status::Partial)
                };
            };
            count_work(lf + 1);
            let start = self.line_start;
            let end = from + lf;
            let mut line = &view[start..end];
            if let [head @ .., b'\r'] = line {
                line = head;
            }
            count_work(line.len());
            if line.contains(&b'\r') {
                return Err(Error::BadRequest);
            }
            self.line_start = end + 1;
            self.scanned = end + 1;
            self.method_ended = false;

            match &self.request_line {
                // Empty lines before the request line are skipped.
                None if line.is_empty() => {}
                None => self.request_line = Some(parse_request_line(line, start)?),
                Some(request_line) if line.is_empty() => {
                    return Ok(Status::Complete(self.request(request_line, view)));
                }
                Some(_) => self.header(line)?,
            }
        }
    }

    /// Rejects binary junk (a TLS hello, say) without waiting for a line
    /// end: the request line starts with a token ending at a space. `line`
    /// is the incomplete first line so far, of which the bytes from `from`
    /// on have not been checked yet. A lone CR may still turn into an empty
    /// line.
    fn check_method_so_far(&mut self, line: &[u8], from: usize) -> Result<(), Error> {
        if line.len() >= 2 && line[0] == b'\r' {
            return Err(Error::BadRequest);
        }
        if self.method_ended {
            return Ok(());
        }
        for (i, &b) in line.iter().enumerate().skip(from) {
            count_work(1);
            if b == b' ' {
                self.method_ended = true;
                return Ok(());
            }
            if !(is_tchar(b) || (i == 0 && b == b'\r')) {
                return Err(Error::BadRequest);
            }
        }
        Ok(())
    }

    /// Checks one header field line and notes what it says about the
    /// framing and the connection.
    fn header(&mut self, line: &[u8]) -> Result<(), Error> {
        let (name, value) = parse_header(line)?;
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_content_length(value)?;
            if self.content_length.is_some_and(|old| old != n) {
                return Err(Error::BadRequest);
            }
            self.content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Err(Error::TransferEncoding);
        } else if name.eq_ignore_ascii_case(b"connection") {
            for option in value.split(|&b| b == b',') {
                let option = trim_ows(option);
                if option.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if option.eq_ignore_ascii_case(b"keep-alive") {
                    self.keep_alive_asked = true;
                }
            }
        }
        Ok(())
    }

    /// The request whose head, started by `line`, ended just before
    /// `self.line_start`.
    fn request<'a>(&self, line: &RequestLine, view: &'a [u8]) -> Request<'a> {
        // `close` wins over `keep-alive` whatever their order.
        let keep_alive = !self.close && (line.minor_version >= 1 || self.keep_alive_asked);
        Request {
            method: &view[line.method.clone()],
            target: &view[line.target.clone()],
            minor_version: line.minor_version,
            keep_alive,
            content_length: self.content_length.unwrap_or(0),
            head_len: self.line_start,
        }
    }
}

/// Parses the request head at the start of `buf` in one go, with a fresh
/// [`HeadParser`].
#[cfg(test)]
pub(crate) fn parse(buf: &[u8]) -> Result<Status<'_>, Error> {
    HeadParser::new().parse(buf)
}

#[cfg(test)]
thread_local! {
    /// The bytes the parsers of this thread have looked at.
    static WORK: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Counts `_n` bytes looked at, in tests only: the measure of parsing work
/// that proves it linear. Compiles to nothing otherwise.
#[inline(always)]
fn count_work(_n: usize) {
    #[cfg(test)]
    WORK.with(|w| w.set(w.get() + _n));
}

/// The bytes the parsers of this thread have looked at so far (tests only).
#[cfg(test)]
pub(crate) fn work() -> usize {
    WORK.with(std::cell::Cell::get)
}

/// Splits `method SP target SP HTTP/1.x`, where `line` starts at `offset`
/// in the buffer, into ranges of the buffer and the minor version.
fn parse_request_line(line: &[u8], offset: usize) -> Result<RequestLine, Error> {
    let sp1 = line
        .iter()
        .position(|&b| b == b' ')
        .ok_or(Error::BadRequest)?;
    let method = &line[..sp1];
    let rest = &line[sp1 + 1..];
    let sp2 = rest
        .iter()
        .position(|&b| b == b' ')
        .ok_or(Error::BadRequest)?;
    let target = &rest[..sp2];
    let version = &rest[sp2 + 1..];

    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(Error::BadRequest);
    }
    if target.is_empty() || !target.iter().all(|&b| b > b' ' && b != 0x7f) {
        return Err(Error::BadRequest);
    }
    let minor_version = match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            if *major != b'1' {
                return Err(Error::Version);
            }
            u8::from(*minor != b'0')
        }
        _ => return Err(Error::BadRequest),
    };
    let target_start = offset + sp1 + 1;
    Ok(RequestLine {
        method: offset..offset + sp1,
        target: target_start..target_start + sp2,
        minor_version,
    })
}

/// Splits `name ":" OWS value OWS`.
fn parse_header(line: &[u8]) -> Result<(&[u8], &[u8]), Error> {
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(Error::BadRequest)?;
    let name = &line[..colon];
    // An empty name, a space before the colon, or a line starting with
    // whitespace (obsolete folding) all fail the token check.
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(Error::BadRequest);
    }
    let value = trim_ows(&line[colon + 1..]);
    if !value
        .iter()
        .all(|&b| b == b'\t' || (b >= b' ' && b != 0x7f))
    {
        return Err(Error::BadRequest);
    }
    Ok((name, value))
}

/// A `Content-Length` value: one or more digits fitting in a `u64`.
fn parse_content_length(value: &[u8]) -> Result<u64, Error> {
    if value.is_empty() {
        return Err(Error::BadRequest);
    }
    let mut n: u64 = 0;
    for &b in value {
        if !b.is_ascii_digit() {
            return Err(Error::BadRequest);
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or(Error::BadRequest)?;
    }
    Ok(n)
}

/// `s` without leading and trailing spaces and tabs.
fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Whether `b` may appear in a token (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `s` and returns the complete request, failing otherwise.
    fn complete(s: &[u8]) -> Request<'_> {
        match parse(s) {
            Ok(Status::Complete(r)) => r,
            other => panic!("expected a complete request for {s:?}, got {other:?}"),
        }
    }

    const SIMPLE: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";

    #[test]
    fn complete_request() {
        let r = complete(SIMPLE);
        assert_eq!(r.method, b"GET");
        assert_eq!(r.target, b"/");
        assert_eq!(r.path(), b"/");
        assert_eq!(r.minor_version, 1);
        assert!(r.keep_alive);
        assert_eq!(r.content_length, 0);
        assert_eq!(r.head_len, SIMPLE.len());
    }

    #[test]
    fn request_without_headers() {
        let r = complete(b"GET /x HTTP/1.1\r\n\r\n");
        assert_eq!(r.target, b"/x");
        assert_eq!(r.head_len, 19);
    }

    #[test]
    fn typical_client_request() {
        let req = b"GET /index.html?q=1#frag HTTP/1.1\r\nHost: example.com:8080\r\n\
                    User-Agent: curl/8.0\r\nAccept: */*\r\nX-Empty:\r\n\
                    X-Tab:\tvalue\twith tab \t\r\nX-Utf8: caf\xc3\xa9\r\n\r\n";
        let r = complete(req);
        assert_eq!(r.target, b"/index.html?q=1#frag");
        assert_eq!(r.path(), b"/index.html");
        assert_eq!(r.head_len, req.len());
    }

    #[test]
    fn partial_at_every_split_point() {
        let req = b"POST /submit HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\n";
        for cut in 0..req.len() {
            assert_eq!(
                parse(&req[..cut]),
                Ok(Status::Partial),
                "prefix of {cut} bytes: {:?}",
                String::from_utf8_lossy(&req[..cut])
            );
        }
        let r = complete(req);
        assert_eq!(r.content_length, 3);
        assert_eq!(r.head_len, req.len());
    }

    #[test]
    fn partial_at_every_split_point_with_bare_lf() {
        let req = b"GET / HTTP/1.0\nHost: a\n\n";
        for cut in 0..req.len() {
            assert_eq!(parse(&req[..cut]), Ok(Status::Partial), "cut {cut}");
        }
        let r = complete(req);
        assert_eq!(r.minor_version, 0);
        assert_eq!(r.head_len, req.len());
    }

    #[test]
    fn pipelined_requests_parse_one_after_another() {
        let mut stream = Vec::new();
        stream.extend_from_slice(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
        stream.extend_from_slice(b"POST /b HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
        stream.extend_from_slice(b"GET /c HTTP/1.1\r\nConnection: close\r\n\r\n");
        stream.extend_from_slice(b"GET /d HT");

        let mut pos = 0;
        let mut seen = Vec::new();
        while let Ok(Status::Complete(r)) = parse(&stream[pos..]) {
            seen.push((r.target.to_vec(), r.keep_alive, r.content_length));
            pos += r.head_len + r.content_length as usize;
        }
        assert_eq!(
            seen,
            vec![
                (b"/a".to_vec(), true, 0),
                (b"/b".to_vec(), true, 5),
                (b"/c".to_vec(), false, 0),
            ]
        );
        assert_eq!(&stream[pos..], b"GET /d HT");
        assert_eq!(parse(&stream[pos..]), Ok(Status::Partial));
    }

    #[test]
    fn head_len_excludes_following_bytes() {
        let mut buf = SIMPLE.to_vec();
        buf.extend_from_slice(b"GARBAGE that is not part of the head");
        assert_eq!(complete(&buf).head_len, SIMPLE.len());
    }

    #[test]
    fn leading_empty_lines_are_skipped() {
        let req = b"\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        let r = complete(req);
        assert_eq!(r.target, b"/");
        assert_eq!(r.head_len, req.len());
        assert_eq!(parse(b"\r\n"), Ok(Status::Partial));
    }

    #[test]
    fn malformed_request_lines() {
        let bad: &[&[u8]] = &[
            b"GET\r\n\r\n",
            b"GET /\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1 \r\n\r\n",
            b" GET / HTTP/1.1\r\n\r\n",
            b"G(T / HTTP/1.1\r\n\r\n",
            b"GET / HTTX/1.1\r\n\r\n",
            b"GET / HTTP/1.\r\n\r\n",
            b"GET / HTTP/11\r\n\r\n",
            b"GET / http/1.1\r\n\r\n",
            b"GET / HTTP/1.1.1\r\n\r\n",
            b"GET /\x01 HTTP/1.1\r\n\r\n",
            b"GET /\x7f HTTP/1.1\r\n\r\n",
            b"GET /a\rb HTTP/1.1\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n",
        ];
        for req in bad {
            assert_eq!(
                parse(req),
                Err(Error::BadRequest),
                "{:?}",
                String::from_utf8_lossy(req)
            );
        }
    }

    #[test]
    fn bad_request_line_is_reported_before_the_head_ends() {
        assert_eq!(parse(b"NOT HTTP\r\nHost: a\r\n"), Err(Error::BadRequest));
    }

    #[test]
    fn binary_junk_is_rejected_before_a_line_end() {
        assert_eq!(parse(b"\x16\x03\x01\x02\x00"), Err(Error::BadRequest));
        assert_eq!(parse(b"\r\n\x16"), Err(Error::BadRequest));
        assert_eq!(parse(b"GE\x00"), Err(Error::BadRequest));
        assert_eq!(parse(b"\r\n\r"), Ok(Status::Partial));
        assert_eq!(parse(b"GET /\x01"), Ok(Status::Partial)); // judged at the line end
    }

    #[test]
    fn other_major_version_is_unsupported() {
        assert_eq!(parse(b"GET / HTTP/2.0\r\n\r\n"), Err(Error::Version));
        assert_eq!(parse(b"GET / HTTP/0.9\r\n\r\n"), Err(Error::Version));
        assert_eq!(Error::Version.status().0, 505);
    }

    #[test]
    fn higher_minor_version_is_treated_as_1_1() {
        let r = complete(b"GET / HTTP/1.9\r\n\r\n");
        assert_eq!(r.minor_version, 1);
        assert!(r.keep_alive);
    }

    #[test]
    fn bad_headers() {
        let bad: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\nNoColon\r\n\r\n",
            b"GET / HTTP/1.1\r\n: empty name\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : space before colon\r\n\r\n",
            b"GET / HTTP/1.1\r\nHo st: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n\tfolded\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\r\n",
        ];
        for req in bad {
            assert_eq!(
                parse(req),
                Err(Error::BadRequest),
                "{:?}",
                String::from_utf8_lossy(req)
            );
        }
    }

    #[test]
    fn oversize_head_is_rejected_complete_or_not() {
        // Incomplete and already at the limit: it can only grow.
        let mut partial = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        partial.resize(MAX_HEAD, b'a');
        assert_eq!(parse(&partial), Err(Error::HeadTooLarge));
        // One byte less is still waiting for more.
        assert_eq!(parse(&partial[..MAX_HEAD - 1]), Ok(Status::Partial));
        // A huge request line with no newline.
        assert_eq!(parse(&vec![b'G'; MAX_HEAD + 10]), Err(Error::HeadTooLarge));

        // Complete but over the limit.
        let mut big = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        big.resize(MAX_HEAD, b'a');
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse(&big), Err(Error::HeadTooLarge));

        // Exactly at the limit is fine.
        let mut exact = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        exact.resize(MAX_HEAD - 4, b'a');
        exact.extend_from_slice(b"\r\n\r\n");
        assert_eq!(complete(&exact).head_len, MAX_HEAD);
        assert_eq!(Error::HeadTooLarge.status().0, 431);
    }

    #[test]
    fn keep_alive_rules() {
        let cases: &[(&[u8], bool)] = &[
            (b"GET / HTTP/1.1\r\n\r\n", true),
            (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false),
            (b"GET / HTTP/1.1\r\nconnection: CLOSE\r\n\r\n", false),
            (b"GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n", true),
            (
                b"GET / HTTP/1.1\r\nConnection: Upgrade, close\r\n\r\n",
                false,
            ),
            (b"GET / HTTP/1.1\r\nConnection:close \r\n\r\n", false),
            (b"GET / HTTP/1.1\r\nConnection: closed\r\n\r\n", true),
            (b"GET / HTTP/1.0\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
            (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
            (b"GET / HTTP/1.0\r\nConnection: close\r\n\r\n", false),
            // `close` wins whatever the order.
            (
                b"GET / HTTP/1.0\r\nConnection: close, keep-alive\r\n\r\n",
                false,
            ),
            (
                b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
                false,
            ),
            (
                b"GET / HTTP/1.1\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n",
                false,
            ),
        ];
        for (req, keep) in cases {
            assert_eq!(
                complete(req).keep_alive,
                *keep,
                "{:?}",
                String::from_utf8_lossy(req)
            );
        }
    }

    #[test]
    fn content_length() {
        assert_eq!(
            complete(b"POST / HTTP/1.1\r\nContent-Length: 42\r\n\r\n").content_length,
            42
        );
        assert_eq!(
            complete(b"POST / HTTP/1.1\r\ncontent-length:  0 \r\n\r\n").content_length,
            0
        );
        // Repeated but equal is allowed.
        assert_eq!(
            complete(b"POST / HTTP/1.1\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n")
                .content_length,
            7
        );
        assert_eq!(
            complete(b"POST / HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n")
                .content_length,
            u64::MAX
        );
        let bad: &[&[u8]] = &[
            b"POST / HTTP/1.1\r\nContent-Length: 7\r\nContent-Length: 8\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\n",
        ];
        for req in bad {
            assert_eq!(
                parse(req),
                Err(Error::BadRequest),
                "{:?}",
                String::from_utf8_lossy(req)
            );
        }
    }

    #[test]
    fn transfer_encoding_is_not_implemented() {
        assert_eq!(
            parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(Error::TransferEncoding)
        );
        assert_eq!(
            parse(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(Error::TransferEncoding)
        );
        assert_eq!(Error::TransferEncoding.status().0, 501);
    }

    #[test]
    fn error_statuses() {
        assert_eq!(Error::BadRequest.status(), (400, "Bad Request"));
    }

    #[test]
    fn tokens() {
        assert!(is_tchar(b'a') && is_tchar(b'Z') && is_tchar(b'9') && is_tchar(b'~'));
        assert!(!is_tchar(b' ') && !is_tchar(b':') && !is_tchar(b'(') && !is_tchar(0x80));
        assert_eq!(trim_ows(b" \t a b \t"), b"a b");
        assert_eq!(trim_ows(b"   "), b"");
    }
}
