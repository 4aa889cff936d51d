//! RESP2, the Redis serialisation protocol: an incremental, zero-copy parser
//! for the commands clients send, and writers for the replies.
//!
//! A client sends each command either as an array of bulk strings
//! (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) or as an *inline* command, one line
//! of words separated by spaces (`PING\r\n`, the form `redis-benchmark` uses
//! for `PING_INLINE` and people type into `telnet`). [`CommandParser`]
//! accepts both. It never copies an argument: it records each argument as a
//! byte range of the caller's read buffer, and [`CommandParser::args`] hands
//! them out as slices of that buffer.
//!
//! The parser is resumable. When a command is cut off by the end of the
//! buffer it remembers how far it got (the arguments already complete, the
//! length of the bulk string arriving, or how much of an inline line it has
//! scanned), so each call looks only at the bytes that are new, plus at
//! most one unfinished length header (a few bytes): a command that arrives
//! in many reads, even one byte per read, is parsed in time linear in its
//! size, not quadratic. The answer, error included, depends only on the
//! bytes, never on how they are split into reads.
//!
//! Nothing a client declares is allocated up front: a length is checked
//! against [`MAX_BULK_LEN`] or [`MAX_ARRAY_LEN`] and then only bounds how far
//! the parser looks; the caller's buffer grows with the bytes that actually
//! arrive, and the argument list with the arguments that are actually
//! complete.
//!
//! Inline commands are split on spaces and tabs; quotes are not interpreted
//! (Redis's own inline form supports them, but no benchmark or client needs
//! it, and unescaping could not be zero-copy).

use std::fmt;
use std::ops::Range;

/// The longest bulk string (one argument) accepted: 512 MiB, Redis's default
/// `proto-max-bulk-len`.
pub(crate) const MAX_BULK_LEN: usize = 512 * 1024 * 1024;

/// The most arguments one command may declare.
pub(crate) const MAX_ARRAY_LEN: usize = 1024 * 1024;

/// The longest inline command line, newline included: 64 KiB, like Redis.
pub(crate) const MAX_INLINE_LEN: usize = 64 * 1024;

/// The most bytes between a `*` or `$` type byte and its `\r\n`: a sign and
/// 19 digits cover every `i64`.
const MAX_LEN_DIGITS: usize = 20;

/// Input that is not valid RESP. The server answers it with an error reply
/// (`-ERR Protocol error: ...`, the [`Display`](fmt::Display) text) and
/// closes the connection, as Redis does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProtocolError {
    /// An array header whose length is not a number, is below -1, or is
    /// over [`MAX_ARRAY_LEN`].
    InvalidArrayLen,
    /// A bulk string header whose length is not a number, is negative, or is
    /// over [`MAX_BULK_LEN`].
    InvalidBulkLen,
    /// An element of a command array that is not a bulk string: the byte
    /// found where `$` belongs.
    ExpectedBulk(u8),
    /// A header or bulk string not followed by `\r\n`.
    ExpectedCrlf,
    /// An inline command with no newline within [`MAX_INLINE_LEN`] bytes.
    InlineTooLong,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Protocol error: ")?;
        match self {
            ProtocolError::InvalidArrayLen => f.write_str("invalid multibulk length"),
            ProtocolError::InvalidBulkLen => f.write_str("invalid bulk length"),
            ProtocolError::ExpectedBulk(b) => {
                write!(f, "expected '$', got '{}'", [*b].escape_ascii())
            }
            ProtocolError::ExpectedCrlf => f.write_str("expected CRLF"),
            ProtocolError::InlineTooLong => f.write_str("too big inline request"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Where a command that has not fully arrived was left off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between commands: the next byte starts a new one.
    Idle,
    /// Inside an array command: `remaining` bulk strings still to come, the
    /// next one starting at offset `pos`; `bulk` is its body's range
    /// (start, end) once its header has been read.
    Array {
        remaining: usize,
        pos: usize,
        bulk: Option<(usize, usize)>,
    },
    /// Inside an inline command: the first `scanned` bytes hold no newline.
    Inline { scanned: usize },
}

/// An incremental parser for client commands; one per connection.
///
/// Call [`parse`](CommandParser::parse) with the buffered bytes starting at
/// the command's first byte. It returns `Ok(None)` while the command is
/// incomplete: call it again, with the same start and more bytes, once they
/// arrive (the buffer may move or grow, as long as the bytes already passed
/// stay the same). It returns `Ok(Some(n))` when the command is complete and
/// takes the first `n` bytes; [`args`](CommandParser::args) then gives its
/// arguments, and the next call starts a new command.
#[derive(Debug)]
pub(crate) struct CommandParser {
    /// The complete arguments of the current command, as ranges of the
    /// buffer passed to `parse`.
    args: Vec<Range<usize>>,
    state: State,
}

impl Default for CommandParser {
    fn default() -> Self {
        Self::new()
    }
}

impl CommandParser {
    /// A parser waiting for the first byte of a command.
    pub(crate) fn new() -> Self {
        CommandParser {
            args: Vec::with_capacity(8),
            state: State::Idle,
        }
    }

    /// Parses (or goes on parsing) one command at the start of `buf`.
    ///
    /// `Ok(Some(n))`: the command is complete and is `buf[..n]`; an empty
    /// command (a blank inline line, `*0\r\n`, or the null array
    /// `*-1\r\n`) has no arguments and wants no reply. `Ok(None)`: more
    /// bytes are needed. `Err`: the input is not RESP; the connection cannot
    /// be resynchronised and should be closed after an error reply.
    pub(crate) fn parse(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
        if self.state == State::Idle {
            self.args.clear();
            match buf.first() {
                None => return Ok(None),
                Some(b'*') => {
                    let Some((len, next)) = header(buf, 0, ProtocolError::InvalidArrayLen)? else {
                        return Ok(None);
                    };
                    match len {
                        // An empty or null array: nothing to run, like Redis.
                        0 | -1 => return Ok(Some(next)),
                        n if n < 0 || n as u64 > MAX_ARRAY_LEN as u64 => {
                            return Err(ProtocolError::InvalidArrayLen)
                        }
                        n => {
                            self.state = State::Array {
                                remaining: n as usize,
                                pos: next,
                                bulk: None,
                            }
                        }
                    }
                }
                Some(_) => self.state = State::Inline { scanned: 0 },
            }
        }
        let result = match self.state {
            State::Idle => unreachable!("the state was set above"),
            State::Array {
                remaining,
                pos,
                bulk,
            } => self.parse_array(buf, remaining, pos, bulk),
            State::Inline { scanned } => self.parse_inline(buf, scanned),
        };
        if result.is_err() {
            // A broken stream has no next command; start clean if reused.
            self.state = State::Idle;
            self.args.clear();
        }
        result
    }

    /// Goes on with the bulk strings of an array command.
    fn parse_array(
        &mut self,
        buf: &[u8],
        mut remaining: usize,
        mut pos: usize,
        mut bulk: Option<(usize, usize)>,
    ) -> Result<Option<usize>, ProtocolError> {
        while remaining > 0 {
            let (body, end) = match bulk {
                Some(range) => range,
                None => {
                    let Some(&ty) = buf.get(pos) else {
                        self.state = State::Array {
                            remaining,
                            pos,
                            bulk,
                        };
                        return Ok(None);
                    };
                    if ty != b'$' {
                        return Err(ProtocolError::ExpectedBulk(ty));
                    }
                    let Some((len, body)) = header(buf, pos, ProtocolError::InvalidBulkLen)? else {
                        // An unfinished header (at most 22 bytes) is read
                        // again from its start next time.
                        self.state = State::Array {
                            remaining,
                            pos,
                            bulk,
                        };
                        return Ok(None);
                    };
                    if len < 0 || len as u64 > MAX_BULK_LEN as u64 {
                        return Err(ProtocolError::InvalidBulkLen);
                    }
                    (body, body + len as usize)
                }
            };
            if buf.get(end..end + 2) == Some(b"\r\n") {
                // The usual case: the whole bulk string is here.
                count_work(2);
                self.args.push(body..end);
                pos = end + 2;
                remaining -= 1;
                bulk = None;
                continue;
            }
            // Check the terminator as far as it has arrived, so garbage is
            // refused as soon as it is seen.
            let tail = buf.get(end..).unwrap_or_default();
            let tail = &tail[..tail.len().min(2)];
            count_work(tail.len());
            if !b"\r\n".starts_with(tail) {
                return Err(ProtocolError::ExpectedCrlf);
            }
            if tail.len() < 2 {
                // The body's bytes are not looked at: the next call goes
                // straight to its end.
                self.state = State::Array {
                    remaining,
                    pos,
                    bulk: Some((body, end)),
                };
                return Ok(None);
            }
            self.args.push(body..end);
            pos = end + 2;
            remaining -= 1;
            bulk = None;
        }
        self.state = State::Idle;
        Ok(Some(pos))
    }

    /// Goes on looking for the end of an inline command line.
    fn parse_inline(&mut self, buf: &[u8], scanned: usize) -> Result<Option<usize>, ProtocolError> {
        let limit = buf.len().min(MAX_INLINE_LEN);
        // Not the bytes of the last call (a shorter buffer): scan again
        // rather than index out of bounds.
        let scanned = if scanned > limit { 0 } else { scanned };
        let found = buf[scanned..limit].iter().position(|&b| b == b'\n');
        count_work(found.map_or(limit - scanned, |i| i + 1));
        let Some(nl) = found.map(|i| scanned + i) else {
            if buf.len() >= MAX_INLINE_LEN {
                return Err(ProtocolError::InlineTooLong);
            }
            self.state = State::Inline { scanned: limit };
            return Ok(None);
        };
        count_work(nl);
        let mut i = 0;
        while i < nl {
            if is_inline_space(buf[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < nl && !is_inline_space(buf[i]) {
                i += 1;
            }
            self.args.push(start..i);
        }
        self.state = State::Idle;
        Ok(Some(nl + 1))
    }

    /// The arguments of the command that the last call to
    /// [`parse`](CommandParser::parse) completed, as slices of `buf`, which
    /// must be (start with) the bytes that call was given.
    pub(crate) fn args<'a>(&'a self, buf: &'a [u8]) -> Args<'a> {
        Args {
            buf,
            ranges: &self.args,
        }
    }
}

/// Whether an inline command separates words at `b` (a `\r` before the
/// newline counts as space, so `PING\r\n` and `PING\n` are the same).
fn is_inline_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r')
}

/// Parses the header line at `buf[pos..]`: a type byte, an optionally
/// negative decimal number, `\r\n`. Returns the number and the offset after
/// the line, `None` if the line has not fully arrived, or `err` (or
/// [`ProtocolError::ExpectedCrlf`]) if it is malformed.
#[inline(always)]
fn header(
    buf: &[u8],
    pos: usize,
    err: ProtocolError,
) -> Result<Option<(i64, usize)>, ProtocolError> {
    let digits_start = pos + 1;
    // One digit or two, the most common lengths, without a loop or a call.
    match *buf.get(digits_start..).unwrap_or_default() {
        [d @ b'0'..=b'9', b'\r', b'\n', ..] => {
            count_work(3);
            Ok(Some((i64::from(d - b'0'), digits_start + 3)))
        }
        [d1 @ b'1'..=b'9', d2 @ b'0'..=b'9', b'\r', b'\n', ..] => {
            count_work(4);
            let n = i64::from(d1 - b'0') * 10 + i64::from(d2 - b'0');
            Ok(Some((n, digits_start + 4)))
        }
        _ => header_slow(buf, digits_start, err),
    }
}

/// [`header`] for the other lines, from the first byte after the type
/// byte: up to 18 digits in one pass ([`short_header`]), and anything else
/// (a sign, a leading zero, many digits, an unfinished or malformed line)
/// the careful way.
#[inline(never)]
fn header_slow(
    buf: &[u8],
    digits_start: usize,
    err: ProtocolError,
) -> Result<Option<(i64, usize)>, ProtocolError> {
    if let Some(found) = short_header(buf.get(digits_start..).unwrap_or_default()) {
        return Ok(Some((found.0, digits_start + found.1)));
    }
    let mut i = digits_start;
    loop {
        count_work(1);
        let Some(&b) = buf.get(i) else {
            return Ok(None);
        };
        if b == b'\r' {
            break;
        }
        if !(b.is_ascii_digit() || b == b'-') || i - digits_start >= MAX_LEN_DIGITS {
            return Err(err);
        }
        i += 1;
    }
    match buf.get(i + 1) {
        None => return Ok(None),
        Some(b'\n') => {}
        Some(_) => return Err(ProtocolError::ExpectedCrlf),
    }
    let n = parse_i64(&buf[digits_start..i]).ok_or(err)?;
    Ok(Some((n, i + 2)))
}

/// A usual header line in one pass: up to 18 digits, the first not `0`
/// unless it is the only one, then `\r\n`; the number and the length of
/// the line after the type byte. `None` for anything else, which
/// [`header`] then parses the careful way (giving the same answer for
/// these lines: 18 digits cannot overflow an `i64`, and no check of
/// `parse_i64` fails on them).
fn short_header(line: &[u8]) -> Option<(i64, usize)> {
    let (&first, _) = line.split_first()?;
    if !first.is_ascii_digit() {
        return None;
    }
    let mut n = i64::from(first - b'0');
    let mut i = 1;
    loop {
        match *line.get(i)? {
            d @ b'0'..=b'9' if i < 18 && first != b'0' => {
                n = n * 10 + i64::from(d - b'0');
                i += 1;
            }
            b'\r' => break,
            _ => return None,
        }
    }
    if *line.get(i + 1)? != b'\n' {
        return None;
    }
    count_work(i + 2);
    Some((n, i + 2))
}

#[cfg(test)]
thread_local! {
    /// The bytes the command parsers of this thread have looked at.
    static WORK: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Counts `_n` bytes looked at, in tests only: the measure of parsing work
/// that proves it linear. Compiles to nothing otherwise.
#[inline(always)]
fn count_work(_n: usize) {
    #[cfg(test)]
    WORK.with(|w| w.set(w.get() + _n));
}

/// The bytes the command parsers of this thread have looked at so far
/// (tests only).
#[cfg(test)]
pub(crate) fn work() -> usize {
    WORK.with(std::cell::Cell::get)
}

/// Parses a decimal `i64` the way Redis does (`string2ll`): an optional `-`
/// and digits, nothing else; no `+`, no spaces, no leading zeros, no `-0`,
/// and no overflow.
pub(crate) fn parse_i64(s: &[u8]) -> Option<i64> {
    let (negative, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, s),
    };
    match digits {
        [] => return None,
        [b'0'] if !negative => return Some(0),
        [b'0', ..] => return None,
        _ => {}
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let d = i64::from(d - b'0');
        // Accumulate downwards so that i64::MIN is reachable.
        n = n.checked_mul(10)?.checked_sub(d)?;
    }
    if negative {
        Some(n)
    } else {
        n.checked_neg()
    }
}

/// The arguments of one command: slices of the read buffer, never copies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Args<'a> {
    buf: &'a [u8],
    ranges: &'a [Range<usize>],
}

impl<'a> Args<'a> {
    /// The number of arguments, the command name included.
    pub(crate) fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether there are none (an empty command).
    pub(crate) fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Argument `i` (`0` is the command name).
    ///
    /// # Panics
    ///
    /// If `i >= self.len()`.
    pub(crate) fn get(&self, i: usize) -> &'a [u8] {
        &self.buf[self.ranges[i].clone()]
    }

    /// All arguments in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let buf = self.buf;
        self.ranges.iter().map(move |r| &buf[r.clone()])
    }
}

/// Appends a simple string reply: `+text\r\n`.
#[inline]
pub(crate) fn write_simple(out: &mut Vec<u8>, text: &[u8]) {
    out.push(b'+');
    push_line(out, text);
}

/// Appends an error reply: `-message\r\n`. A `\r` or `\n` in `message`
/// (which may quote client input) becomes a space, so the reply stays one
/// line.
pub(crate) fn write_error(out: &mut Vec<u8>, message: &[u8]) {
    out.push(b'-');
    push_line(out, message);
}

/// Appends an integer reply: `:n\r\n`.
pub(crate) fn write_integer(out: &mut Vec<u8>, n: i64) {
    out.push(b':');
    push_i64(out, n);
    out.extend_from_slice(b"\r\n");
}

/// Appends a bulk string reply: `$len\r\nbytes\r\n`.
pub(crate) fn write_bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 16);
    out.push(b'$');
    push_i64(out, bytes.len() as i64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// Appends the null bulk string reply, `$-1\r\n` (a missing key).
pub(crate) fn write_null(out: &mut Vec<u8>) {
    out.extend_from_slice(b"$-1\r\n");
}

/// Appends an array header, `*len\r\n`; the `len` elements follow.
pub(crate) fn write_array_len(out: &mut Vec<u8>, len: usize) {
    out.push(b'*');
    push_i64(out, len as i64);
    out.extend_from_slice(b"\r\n");
}

/// Appends `text` with CR and LF replaced by spaces, then `\r\n`.
#[inline]
fn push_line(out: &mut Vec<u8>, text: &[u8]) {
    if text.iter().any(|&b| b == b'\r' || b == b'\n') {
        out.extend(
            text.iter()
                .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
    } else {
        // The usual case (and, for a constant such as `OK`, decided at
        // compile time): the bytes as they are.
        out.extend_from_slice(text);
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends the decimal form of `n`, without going through `fmt`.
pub(crate) fn push_i64(out: &mut Vec<u8>, n: i64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut v = n.unsigned_abs();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if n < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[i..]);
}

/// A decoded RESP2 value: what the tests use to read replies back.
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value<'a> {
    /// `+text`
    Simple(&'a [u8]),
    /// `-message`
    Error(&'a [u8]),
    /// `:n`
    Integer(i64),
    /// `$len` and bytes; `None` for the null bulk string `$-1`.
    Bulk(Option<&'a [u8]>),
    /// `*len` and elements; `None` for the null array `*-1`.
    Array(Option<Vec<Value<'a>>>),
}

/// Decodes one RESP2 value of any type at the start of `buf` (nested at
/// most 32 deep): the value and the bytes it took, `None` if incomplete.
#[cfg(test)]
pub(crate) fn parse_value(buf: &[u8]) -> Result<Option<(Value<'_>, usize)>, ProtocolError> {
    parse_value_at(buf, 0, 0)
}

#[cfg(test)]
fn parse_value_at(
    buf: &[u8],
    pos: usize,
    depth: usize,
) -> Result<Option<(Value<'_>, usize)>, ProtocolError> {
    let Some(&ty) = buf.get(pos) else {
        return Ok(None);
    };
    let line = |pos: usize| -> Result<Option<(&[u8], usize)>, ProtocolError> {
        let Some(cr) = buf[pos..].iter().position(|&b| b == b'\r') else {
            return Ok(None);
        };
        match buf.get(pos + cr + 1) {
            None => Ok(None),
            Some(b'\n') => Ok(Some((&buf[pos..pos + cr], pos + cr + 2))),
            Some(_) => Err(ProtocolError::ExpectedCrlf),
        }
    };
    match ty {
        b'+' | b'-' => Ok(line(pos + 1)?.map(|(text, next)| {
            let v = if ty == b'+' {
                Value::Simple(text)
            } else {
                Value::Error(text)
            };
            (v, next)
        })),
        b':' => match line(pos + 1)? {
            None => Ok(None),
            Some((text, next)) => {
                let n = parse_i64(text).ok_or(ProtocolError::InvalidBulkLen)?;
                Ok(Some((Value::Integer(n), next)))
            }
        },
        b'$' => {
            let Some((len, body)) = header(buf, pos, ProtocolError::InvalidBulkLen)? else {
                return Ok(None);
            };
            if len == -1 {
                return Ok(Some((Value::Bulk(None), body)));
            }
            if len < 0 || len as u64 > MAX_BULK_LEN as u64 {
                return Err(ProtocolError::InvalidBulkLen);
            }
            let end = body + len as usize;
            match buf.get(end..end + 2) {
                None => Ok(None),
                Some(b"\r\n") => Ok(Some((Value::Bulk(Some(&buf[body..end])), end + 2))),
                Some(_) => Err(ProtocolError::ExpectedCrlf),
            }
        }
        b'*' => {
            let Some((len, mut next)) = header(buf, pos, ProtocolError::InvalidArrayLen)? else {
                return Ok(None);
            };
            if len == -1 {
                return Ok(Some((Value::Array(None), next)));
            }
            if len < 0 || len as u64 > MAX_ARRAY_LEN as u64 || depth >= 32 {
                return Err(ProtocolError::InvalidArrayLen);
            }
            let mut items = Vec::new();
            for _ in 0..len {
                let Some((item, after)) = parse_value_at(buf, next, depth + 1)? else {
                    return Ok(None);
                };
                items.push(item);
                next = after;
            }
            Ok(Some((Value::Array(Some(items)), next)))
        }
        other => Err(ProtocolError::ExpectedBulk(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Commands as owned argument lists.
    type Commands = Vec<Vec<Vec<u8>>>;

    /// Parses every complete command in `input` with one fresh parser:
    /// the argument lists, and the number of bytes left unparsed.
    fn parse_all(input: &[u8]) -> Result<(Commands, usize), ProtocolError> {
        let mut parser = CommandParser::new();
        let mut pos = 0;
        let mut commands = Vec::new();
        while let Some(n) = parser.parse(&input[pos..])? {
            let args = parser.args(&input[pos..]);
            commands.push(args.iter().map(<[u8]>::to_vec).collect());
            pos += n;
        }
        Ok((commands, input.len() - pos))
    }

    /// One command's arguments, for comparisons.
    fn cmd(args: &[&str]) -> Vec<Vec<u8>> {
        args.iter().map(|a| a.as_bytes().to_vec()).collect()
    }

    /// Encodes a command as a RESP array of bulk strings.
    fn encode(args: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        write_array_len(&mut out, args.len());
        for a in args {
            write_bulk(&mut out, a);
        }
        out
    }

    #[test]
    fn array_command() {
        let input = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n";
        assert_eq!(
            parse_all(input),
            Ok((vec![cmd(&["SET", "key", "value"])], 0))
        );
    }

    #[test]
    fn arguments_are_slices_of_the_input() {
        let input = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
        let mut parser = CommandParser::new();
        assert_eq!(parser.parse(input), Ok(Some(input.len())));
        let args = parser.args(input);
        assert_eq!(args.len(), 2);
        assert!(!args.is_empty());
        let k = args.get(1);
        assert_eq!(k, b"k");
        assert!(std::ptr::eq(k.as_ptr(), &input[input.len() - 3]));
    }

    #[test]
    fn binary_safe_bulk_strings() {
        let value: &[u8] = b"a\r\nb\0c$*\r\n";
        let input = encode(&[b"SET", b"", value]);
        let (commands, rest) = parse_all(&input).unwrap();
        assert_eq!(rest, 0);
        assert_eq!(
            commands,
            vec![vec![b"SET".to_vec(), Vec::new(), value.to_vec()]]
        );
    }

    #[test]
    fn inline_commands() {
        assert_eq!(parse_all(b"PING\r\n"), Ok((vec![cmd(&["PING"])], 0)));
        assert_eq!(parse_all(b"PING\n"), Ok((vec![cmd(&["PING"])], 0)));
        assert_eq!(
            parse_all(b"  set\tkey   value \r\n"),
            Ok((vec![cmd(&["set", "key", "value"])], 0))
        );
        // A blank line is an empty command (no reply); a bare "\r" is space.
        assert_eq!(parse_all(b"\r\n\n"), Ok((vec![vec![], vec![]], 0)));
        // Quotes are kept as they are.
        assert_eq!(
            parse_all(b"ECHO \"a\"\r\n"),
            Ok((vec![cmd(&["ECHO", "\"a\""])], 0))
        );
    }

    #[test]
    fn empty_and_null_arrays_are_empty_commands() {
        assert_eq!(parse_all(b"*0\r\n*-1\r\n"), Ok((vec![vec![], vec![]], 0)));
    }

    #[test]
    fn pipelined_commands_in_order() {
        let mut input = Vec::new();
        for i in 0..100 {
            input.extend(encode(&[b"SET", format!("k{i}").as_bytes(), b"v"]));
            input.extend_from_slice(b"PING\r\n");
        }
        input.extend_from_slice(b"*2\r\n$3\r\nGET"); // an unfinished tail
        let (commands, rest) = parse_all(&input).unwrap();
        assert_eq!(commands.len(), 200);
        for i in 0..100 {
            assert_eq!(commands[2 * i], cmd(&["SET", &format!("k{i}"), "v"]));
            assert_eq!(commands[2 * i + 1], cmd(&["PING"]));
        }
        assert_eq!(rest, b"*2\r\n$3\r\nGET".len());
    }

    /// A stream of mixed commands, split at every point: a fresh parser on
    /// a prefix says "incomplete" (never an error, never a wrong command),
    /// and a parser resumed on the whole input gives the same commands as
    /// one that saw it at once.
    #[test]
    fn partial_input_at_every_split_point() {
        let mut input = encode(&[b"SET", b"key", b"a\r\nvalue"]);
        input.extend_from_slice(b"PING hello\r\n");
        input.extend(encode(&[b"GET", b""]));
        input.extend_from_slice(b"*0\r\n");
        input.extend(encode(&[b"INCR", b"counter-1234567890"]));
        let whole = parse_all(&input).unwrap();
        assert_eq!(whole.0.len(), 5);
        assert_eq!(whole.1, 0);

        for split in 0..=input.len() {
            let mut parser = CommandParser::new();
            let mut pos = 0;
            let mut commands: Commands = Vec::new();
            // First only the prefix is there...
            while let Some(n) = parser.parse(&input[pos..split]).unwrap() {
                commands.push(
                    parser
                        .args(&input[pos..])
                        .iter()
                        .map(<[u8]>::to_vec)
                        .collect(),
                );
                pos += n;
            }
            assert!(pos <= split);
            // ...then the rest arrives, in a buffer at another address.
            let moved = input.clone();
            while let Some(n) = parser.parse(&moved[pos..]).unwrap() {
                commands.push(
                    parser
                        .args(&moved[pos..])
                        .iter()
                        .map(<[u8]>::to_vec)
                        .collect(),
                );
                pos += n;
            }
            assert_eq!(pos, input.len(), "split at {split}");
            assert_eq!(commands, whole.0, "split at {split}");
        }
    }

    /// Byte by byte: every intermediate call is incomplete.
    #[test]
    fn one_byte_at_a_time() {
        let input = encode(&[b"ECHO", b"0123456789"]);
        let mut parser = CommandParser::new();
        for end in 0..input.len() {
            assert_eq!(parser.parse(&input[..end]), Ok(None), "at {end}");
        }
        assert_eq!(parser.parse(&input), Ok(Some(input.len())));
        assert_eq!(parser.args(&input).get(1), b"0123456789");
    }

    /// Feeds `input` to one parser a byte at a time (each call sees one
    /// more byte) and returns the bytes the parser looked at; the command
    /// must complete exactly at the last byte.
    fn work_one_byte_at_a_time(input: &[u8]) -> usize {
        let mut parser = CommandParser::new();
        let before = work();
        for end in 1..input.len() {
            assert_eq!(parser.parse(&input[..end]), Ok(None), "at {end}");
        }
        assert_eq!(parser.parse(input), Ok(Some(input.len())));
        work() - before
    }

    /// Regression guard (issue 6): a command trickling in one byte per
    /// read costs work linear in its size. A large bulk string's body is
    /// never looked at (each call checks only for its terminator), an
    /// inline line is scanned once, and an array of many small arguments
    /// reads each header a bounded number of times. Re-parsing from the
    /// command's start on each call would look at some `n * n / 2` bytes.
    #[test]
    fn drip_fed_commands_cost_linear_work() {
        let value = vec![b'v'; 200_000];
        let big = encode(&[b"SET", b"key", &value]);
        let work = work_one_byte_at_a_time(&big);
        assert!(work <= 2 * big.len(), "{work} for {} bytes", big.len());

        let mut inline = b"SET key ".to_vec();
        inline.resize(MAX_INLINE_LEN - 2, b'x');
        inline.extend_from_slice(b"\r\n");
        let work = work_one_byte_at_a_time(&inline);
        assert!(
            work <= 3 * inline.len(),
            "{work} for {} bytes",
            inline.len()
        );

        let args: Vec<&[u8]> = std::iter::repeat_n(&b"abc"[..], 10_000).collect();
        let many = encode(&args);
        let work = work_one_byte_at_a_time(&many);
        assert!(work <= 3 * many.len(), "{work} for {} bytes", many.len());
    }

    #[test]
    fn bad_element_type_bytes() {
        for ty in [b'+', b'-', b':', b'*', b'x', b'\0'] {
            let input = [b'*', b'1', b'\r', b'\n', ty, b'1', b'\r', b'\n'];
            assert_eq!(parse_all(&input), Err(ProtocolError::ExpectedBulk(ty)));
        }
    }

    #[test]
    fn bad_array_lengths() {
        for input in [
            &b"*-2\r\n"[..],
            b"*x\r\n",
            b"*\r\n",
            b"*-\r\n",
            b"*+1\r\n",
            b"* 1\r\n",
            b"*1 \r\n",
            b"*99999999999999999999\r\n",
            b"*123456789012345678901234",
        ] {
            assert_eq!(
                parse_all(input),
                Err(ProtocolError::InvalidArrayLen),
                "{input:?}"
            );
        }
        let too_many = format!("*{}\r\n", MAX_ARRAY_LEN + 1);
        assert_eq!(
            parse_all(too_many.as_bytes()),
            Err(ProtocolError::InvalidArrayLen)
        );
        // The largest allowed count is accepted (and allocates nothing yet).
        let most = format!("*{MAX_ARRAY_LEN}\r\n");
        assert_eq!(parse_all(most.as_bytes()), Ok((vec![], most.len())));
    }

    #[test]
    fn bad_bulk_lengths() {
        for input in [
            &b"*1\r\n$-1\r\n"[..],
            b"*1\r\n$-5\r\n",
            b"*1\r\n$x\r\n",
            b"*1\r\n$\r\n",
            b"*1\r\n$1.5\r\n",
            b"*1\r\n$9223372036854775808\r\n",
        ] {
            assert_eq!(
                parse_all(input),
                Err(ProtocolError::InvalidBulkLen),
                "{input:?}"
            );
        }
        let too_long = format!("*1\r\n${}\r\n", MAX_BULK_LEN + 1);
        assert_eq!(
            parse_all(too_long.as_bytes()),
            Err(ProtocolError::InvalidBulkLen)
        );
        // The largest allowed length just waits for its bytes.
        let most = format!("*1\r\n${MAX_BULK_LEN}\r\nabc");
        assert_eq!(parse_all(most.as_bytes()), Ok((vec![], most.len())));
    }

    #[test]
    fn missing_crlf() {
        for input in [
            &b"*1\r\n$3\r\nGETxx"[..],
            b"*1\r\n$3\r\nGET\rx",
            b"*1\r\n$3\r\nGET\n",
            b"*1\rx",
            b"*1\r\n$3\rx",
        ] {
            assert_eq!(
                parse_all(input),
                Err(ProtocolError::ExpectedCrlf),
                "{input:?}"
            );
        }
        // A bare LF after a header is not a digit: refused at once.
        assert_eq!(parse_all(b"*1\n"), Err(ProtocolError::InvalidArrayLen));
    }

    #[test]
    fn inline_too_long() {
        let mut input = vec![b'a'; MAX_INLINE_LEN - 1];
        assert_eq!(parse_all(&input), Ok((vec![], MAX_INLINE_LEN - 1)));
        input.push(b'\n');
        assert_eq!(parse_all(&input).unwrap().0.len(), 1);
        let long = vec![b'a'; MAX_INLINE_LEN];
        assert_eq!(parse_all(&long), Err(ProtocolError::InlineTooLong));
        // Resumed scanning reaches the same verdict.
        let mut parser = CommandParser::new();
        assert_eq!(parser.parse(&long[..1000]), Ok(None));
        assert_eq!(parser.parse(&long), Err(ProtocolError::InlineTooLong));
    }

    #[test]
    fn parser_is_reusable_after_an_error() {
        let mut parser = CommandParser::new();
        assert!(parser.parse(b"*1\r\n:1\r\n").is_err());
        assert_eq!(parser.parse(b"PING\r\n"), Ok(Some(6)));
    }

    #[test]
    fn error_messages_match_redis() {
        assert_eq!(
            ProtocolError::ExpectedBulk(b':').to_string(),
            "Protocol error: expected '$', got ':'"
        );
        assert_eq!(
            ProtocolError::ExpectedBulk(b'\n').to_string(),
            "Protocol error: expected '$', got '\\n'"
        );
        assert_eq!(
            ProtocolError::InvalidBulkLen.to_string(),
            "Protocol error: invalid bulk length"
        );
        assert_eq!(
            ProtocolError::InvalidArrayLen.to_string(),
            "Protocol error: invalid multibulk length"
        );
        assert_eq!(
            ProtocolError::ExpectedCrlf.to_string(),
            "Protocol error: expected CRLF"
        );
        assert_eq!(
            ProtocolError::InlineTooLong.to_string(),
            "Protocol error: too big inline request"
        );
    }

    #[test]
    fn integers_like_redis() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"42"), Some(42));
        assert_eq!(parse_i64(b"-42"), Some(-42));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"-0",
            b"01",
            b"+1",
            b" 1",
            b"1 ",
            b"1a",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"99999999999999999999999",
        ] {
            assert_eq!(parse_i64(bad), None, "{bad:?}");
        }
    }

    /// Each writer produces its RESP2 type, which decodes back to the same
    /// value.
    #[test]
    fn every_reply_type_round_trips() {
        let mut out = Vec::new();
        write_simple(&mut out, b"OK");
        write_error(&mut out, b"ERR bad\r\nthing");
        write_integer(&mut out, 0);
        write_integer(&mut out, i64::MIN);
        write_integer(&mut out, i64::MAX);
        write_bulk(&mut out, b"");
        write_bulk(&mut out, b"bin\r\nary");
        write_null(&mut out);
        write_array_len(&mut out, 2);
        write_bulk(&mut out, b"x");
        write_integer(&mut out, -7);
        write_array_len(&mut out, 0);
        assert!(out.starts_with(b"+OK\r\n-ERR bad  thing\r\n:0\r\n:-9223372036854775808\r\n"));

        let expected = [
            Value::Simple(b"OK"),
            Value::Error(b"ERR bad  thing"),
            Value::Integer(0),
            Value::Integer(i64::MIN),
            Value::Integer(i64::MAX),
            Value::Bulk(Some(b"")),
            Value::Bulk(Some(b"bin\r\nary")),
            Value::Bulk(None),
            Value::Array(Some(vec![Value::Bulk(Some(b"x")), Value::Integer(-7)])),
            Value::Array(Some(vec![])),
        ];
        let mut pos = 0;
        for want in expected {
            let (got, n) = parse_value(&out[pos..]).unwrap().unwrap();
            assert_eq!(got, want);
            pos += n;
        }
        assert_eq!(pos, out.len());
    }

    /// The reply decoder: every type, nulls, incomplete input at every
    /// split point, and malformed input.
    #[test]
    fn value_decoder() {
        let input = b"*3\r\n+a\r\n*-1\r\n*2\r\n$-1\r\n:5\r\n";
        let (v, n) = parse_value(input).unwrap().unwrap();
        assert_eq!(n, input.len());
        assert_eq!(
            v,
            Value::Array(Some(vec![
                Value::Simple(b"a"),
                Value::Array(None),
                Value::Array(Some(vec![Value::Bulk(None), Value::Integer(5)])),
            ]))
        );
        for split in 0..input.len() {
            assert_eq!(parse_value(&input[..split]), Ok(None), "split at {split}");
        }
        assert_eq!(
            parse_value(b"?x\r\n"),
            Err(ProtocolError::ExpectedBulk(b'?'))
        );
        assert_eq!(parse_value(b":x\r\n"), Err(ProtocolError::InvalidBulkLen));
        assert_eq!(
            parse_value(b"$1\r\nab\r\n"),
            Err(ProtocolError::ExpectedCrlf)
        );
        assert_eq!(parse_value(b"+a\rb"), Err(ProtocolError::ExpectedCrlf));
        let deep = "*1\r\n".repeat(40);
        assert_eq!(
            parse_value(deep.as_bytes()),
            Err(ProtocolError::InvalidArrayLen)
        );
    }

    #[test]
    fn short_headers_agree_with_the_careful_parse() {
        let mut lines: Vec<Vec<u8>> = Vec::new();
        for digits in [
            "0",
            "7",
            "00",
            "01",
            "10",
            "99",
            "100",
            "016",
            "123456789012345678",
            "999999999999999999",
            "1234567890123456789",
            "9223372036854775807",
            "9223372036854775808",
            "-1",
            "-0",
            "",
            "1a",
            "12x",
        ] {
            for end in ["\r\n", "\r", "", "\rx", "\n"] {
                lines.push(format!("{digits}{end}").into_bytes());
            }
        }
        for line in &lines {
            let careful = line
                .iter()
                .position(|&b| b == b'\r')
                .filter(|&cr| line.get(cr + 1) == Some(&b'\n'))
                .and_then(|cr| Some((parse_i64(&line[..cr])?, cr + 2)));
            match short_header(line) {
                // When it answers, it answers as the careful parse does.
                Some(found) => assert_eq!(Some(found), careful, "{:?}", line.escape_ascii()),
                // It may leave a valid line to the careful parse only when
                // it is unusual (more than 18 digits or a sign).
                None => assert!(
                    careful.is_none() || line.len() > 20 || line.starts_with(b"-"),
                    "{:?}",
                    line.escape_ascii()
                ),
            }
        }
        // And through `header` (its one- and two-digit cases, then the
        // rest), with the type byte in front.
        for line in &lines {
            let careful = line
                .iter()
                .position(|&b| b == b'\r')
                .filter(|&cr| line.get(cr + 1) == Some(&b'\n'))
                .and_then(|cr| Some((parse_i64(&line[..cr])?, cr + 3)));
            let mut buf = b"$".to_vec();
            buf.extend_from_slice(line);
            if let Ok(Some(found)) = header(&buf, 0, ProtocolError::InvalidBulkLen) {
                assert_eq!(Some(found), careful, "{:?}", line.escape_ascii());
            } else {
                assert_eq!(careful, None, "{:?}", line.escape_ascii());
            }
        }
        let buf = b"$16\r\nkey:000000000012\r\n";
        assert_eq!(
            header(buf, 0, ProtocolError::InvalidBulkLen),
            Ok(Some((16, 5)))
        );
        assert_eq!(
            header(b"$01\r\n", 0, ProtocolError::InvalidBulkLen),
            Err(ProtocolError::InvalidBulkLen)
        );
        assert_eq!(header(b"$12", 0, ProtocolError::InvalidBulkLen), Ok(None));
    }

    #[test]
    fn decimal_formatting() {
        for n in [0, 1, -1, 9, 10, 99, 100, 12345, -98765, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            push_i64(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }
}
