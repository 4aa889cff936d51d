//! Property ("fuzz") tests for the RESP command parser and the connection
//! logic around it (issue 6, item 4: bad input).
//!
//! No fuzzing crate is used: a small deterministic PRNG (splitmix64) with a
//! fixed seed per property generates thousands of cases, so every failure
//! reproduces exactly. Each assertion message names the case number.
//!
//! The connection loop of `main.rs` is modelled by [`Server`]: an input
//! buffer that starts at [`READ_BUF`] bytes and doubles when full (up to
//! [`MAX_QUERY_BUF`]), reads that fill only its spare capacity, [`serve`]
//! until it wants more input, and the unfinished command moved to the front.

use crate::resp::{
    parse_value, write_array_len, write_bulk, CommandParser, MAX_ARRAY_LEN, MAX_BULK_LEN,
    MAX_INLINE_LEN,
};
use crate::store::{serve, Store};
use crate::{MAX_QUERY_BUF, READ_BUF, SHRINK_ABOVE};

#[path = "../test_rng.rs"]
mod test_rng;
use test_rng::Rng;

/// Cuts `len` bytes into chunk sizes: one byte at a time, small pieces,
/// large pieces, or a mix, so that every kind of split point is exercised.
fn chunk_sizes(rng: &mut Rng, len: usize) -> Vec<usize> {
    // Byte by byte is the costliest to run (a `serve` call per byte), so it
    // is one mode in eight.
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
            _ => [1, 3, 64, 1024, 16384][rng.below(5)],
        };
        let n = rng.range(1, max + 1).min(left);
        sizes.push(n);
        left -= n;
    }
    sizes
}

/// Pieces of RESP syntax, so that random input reaches deep parser states.
const DICTIONARY: &[&[u8]] = &[
    b"*",
    b"$",
    b"+",
    b"-",
    b":",
    b"*1\r\n",
    b"*2\r\n",
    b"*-1\r\n",
    b"*0\r\n",
    b"$3\r\nGET\r\n",
    b"$1\r\nk\r\n",
    b"$-1\r\n",
    b"$0\r\n\r\n",
    b"\r\n",
    b"\r",
    b"\n",
    b"1",
    b"9",
    b"-1",
    b"99999999999999999999",
    b"9223372036854775807",
    b"536870913",
    b"1048577",
    b"PING\r\n",
    b"SET k v\r\n",
    b"GET k\r\n",
    b" ",
    b"\t",
    b"\x00",
    b"\xff",
];

/// Random bytes of length `0..max_len` from one of several biased
/// alphabets: printable, CR/LF heavy, digits, RESP type bytes, RESP
/// dictionary, or binary.
fn arbitrary_bytes(rng: &mut Rng, max_len: usize) -> Vec<u8> {
    let len = rng.below(max_len);
    let mut out = Vec::with_capacity(len + 32);
    let alphabet = rng.below(7);
    while out.len() < len {
        match alphabet {
            0 => out.push(rng.range(0x20, 0x7f) as u8),
            1 => out.push(b"\r\n\r\n\r\n \ta1"[rng.below(10)]),
            2 => out.push(b"0123456789-\r\n"[rng.below(13)]),
            3 => out.push(b"*$+-:0123\r\n"[rng.below(11)]),
            4 | 5 => out.extend_from_slice(rng.pick_bytes(DICTIONARY)),
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
            1 => bytes[at] = b"\r\n*$-0"[rng.below(6)],
            2 => bytes.insert(at, b"\r\n*$:0\xff"[rng.below(7)]),
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

/// One generated valid command: its bytes and its arguments (none for an
/// empty command, which gets no reply).
struct Cmd {
    bytes: Vec<u8>,
    args: Vec<Vec<u8>>,
}

/// A command name, often a real one, and a key from a small set so that
/// commands act on each other's keys.
fn gen_args(rng: &mut Rng) -> Vec<Vec<u8>> {
    let name = rng.pick_bytes(&[
        &b"SET"[..],
        b"get",
        b"GET",
        b"DEL",
        b"EXISTS",
        b"INCR",
        b"decr",
        b"INCRBY",
        b"PING",
        b"ECHO",
        b"CONFIG",
        b"COMMAND",
        b"NOPE",
    ]);
    let mut args = vec![name.to_vec()];
    for _ in 0..rng.below(5) {
        let arg = match rng.below(5) {
            0 => rng
                .pick_bytes(&[&b"k1"[..], b"k2", b"counter", b"GET", b"NX", b"XX", b"save"])
                .to_vec(),
            1 => (rng.below(2_000_000) as i64 - 1_000_000)
                .to_string()
                .into_bytes(),
            2 => (0..rng.below(2000)).map(|_| rng.byte()).collect(),
            _ => (0..rng.below(40)).map(|_| rng.byte()).collect(),
        };
        args.push(arg);
    }
    args
}

/// A random valid command: an array of bulk strings (any bytes), an inline
/// line of words, or an empty command (`*0`, `*-1`, a blank line).
fn gen_command(rng: &mut Rng) -> Cmd {
    let mut args = gen_args(rng);
    let mut bytes = Vec::new();
    match rng.below(10) {
        0..=5 => {
            write_array_len(&mut bytes, args.len());
            for a in &args {
                write_bulk(&mut bytes, a);
            }
        }
        6..=8 => {
            // Inline words hold no space, tab, CR or LF.
            for a in &mut args {
                a.retain(|&b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
                a.truncate(200);
            }
            args.retain(|a| !a.is_empty());
            for (i, a) in args.iter().enumerate() {
                // Words need a separator between them; the line may start
                // with one.
                let least = usize::from(i > 0 || rng.one_in(3));
                for _ in 0..rng.range(least, 3) {
                    bytes.push(b" \t"[rng.below(2)]);
                }
                bytes.extend_from_slice(a);
            }
            // A leading `*` would make it an array command.
            if bytes.first() == Some(&b'*') {
                bytes.insert(0, b' ');
            }
            if rng.one_in(3) {
                bytes.push(b' ');
            }
            bytes.extend_from_slice(rng.pick_bytes(&[&b"\r\n"[..], b"\n"]));
        }
        _ => {
            args.clear();
            bytes.extend_from_slice(rng.pick_bytes(&[&b"*0\r\n"[..], b"*-1\r\n", b"\r\n", b"\n"]));
        }
    }
    Cmd { bytes, args }
}

/// A random pipelined stream of 1..10 valid commands.
fn gen_stream(rng: &mut Rng) -> Vec<Cmd> {
    (0..rng.range(1, 11)).map(|_| gen_command(rng)).collect()
}

fn concat(cmds: &[Cmd]) -> Vec<u8> {
    cmds.iter().flat_map(|c| c.bytes.iter().copied()).collect()
}

/// The connection loop of `main.rs` without sockets.
struct Server {
    store: Store,
    parser: CommandParser,
    input: Vec<u8>,
    out: Vec<u8>,
    closed: bool,
}

impl Server {
    fn new() -> Server {
        Server {
            store: Store::new(),
            parser: CommandParser::new(),
            input: Vec::with_capacity(READ_BUF),
            out: Vec::new(),
            closed: false,
        }
    }

    /// One read of at most `data.len()` bytes, then every complete command;
    /// returns the bytes the read took and the replies it produced.
    fn read(&mut self, data: &[u8]) -> (usize, Vec<u8>) {
        assert!(!self.closed, "read after close");
        let mut out = Vec::new();
        if self.input.len() == self.input.capacity() {
            if self.input.len() >= MAX_QUERY_BUF {
                out.extend_from_slice(b"-ERR Protocol error: query buffer limit exceeded\r\n");
                self.closed = true;
                self.out.extend_from_slice(&out);
                return (0, out);
            }
            self.input.reserve(self.input.capacity());
        }
        let n = data.len().min(self.input.capacity() - self.input.len());
        self.input.extend_from_slice(&data[..n]);
        let mut start = 0;
        loop {
            let progress = serve(
                &mut self.store,
                &mut self.parser,
                &self.input[start..],
                &mut out,
            );
            assert!(progress.consumed <= self.input.len() - start);
            start += progress.consumed;
            if progress.close {
                self.closed = true;
                break;
            }
            if !progress.more {
                break;
            }
        }
        if start > 0 {
            self.input.copy_within(start.., 0);
            self.input.truncate(self.input.len() - start);
        }
        if self.input.is_empty() && self.input.capacity() > SHRINK_ABOVE {
            self.input = Vec::with_capacity(READ_BUF);
        }
        self.out.extend_from_slice(&out);
        (n, out)
    }

    /// Feeds `data` in chunks of the given sizes (the rest in one go) until
    /// it is used up or the connection closes; returns every reply byte and
    /// whether it closed.
    fn feed(mut self, data: &[u8], sizes: &[usize]) -> (Vec<u8>, bool) {
        let mut pos = 0;
        let mut sizes = sizes.iter().copied();
        while pos < data.len() && !self.closed {
            let want = sizes.next().unwrap_or(data.len() - pos);
            let (n, _) = self.read(&data[pos..pos + want.min(data.len() - pos)]);
            pos += n;
        }
        (self.out, self.closed)
    }
}

/// Checks that `out` is a sequence of complete, well-formed RESP replies
/// and returns how many there are.
fn count_replies(out: &[u8]) -> usize {
    let mut pos = 0;
    let mut count = 0;
    while pos < out.len() {
        match parse_value(&out[pos..]) {
            Ok(Some((_, n))) => pos += n,
            other => panic!(
                "malformed reply {other:?} at {pos} in {:?}",
                String::from_utf8_lossy(out)
            ),
        }
        count += 1;
    }
    count
}

/// Feeds `data` to a fresh parser in chunks of the given sizes, resuming a
/// cut-off command on the grown buffer; returns the commands' arguments
/// and the bytes left unparsed.
fn parse_in_chunks(data: &[u8], sizes: &[usize]) -> (Vec<Vec<Vec<u8>>>, usize) {
    let mut parser = CommandParser::new();
    let mut commands = Vec::new();
    let mut start = 0;
    let mut end = 0;
    for &size in sizes {
        end += size;
        while let Some(n) = parser.parse(&data[start..end]).unwrap() {
            assert!(n > 0 && n <= end - start);
            commands.push(
                parser
                    .args(&data[start..end])
                    .iter()
                    .map(<[u8]>::to_vec)
                    .collect(),
            );
            start += n;
        }
    }
    (commands, end - start)
}

/// Proves: the command parser never panics on arbitrary bytes (0..4 KiB,
/// from printable, CR/LF-heavy, digit, RESP-type-byte, dictionary and
/// binary alphabets, plus mutated valid streams) fed whole or resumed over
/// random chunks, and what it reports is consistent: a complete command
/// lies within the buffer, is not empty, and its arguments lie within it.
#[test]
fn parser_never_panics_on_arbitrary_bytes() {
    let mut rng = Rng::new(0x5245_5350_0001);
    for case in 0..10_000 {
        let data = if rng.one_in(3) {
            let mut b = concat(&gen_stream(&mut rng));
            mutate(&mut rng, &mut b);
            b
        } else {
            arbitrary_bytes(&mut rng, 4096)
        };
        let sizes = chunk_sizes(&mut rng, data.len());
        let mut parser = CommandParser::new();
        let (mut start, mut end) = (0, 0);
        'reads: for size in sizes {
            end += size;
            loop {
                match parser.parse(&data[start..end]) {
                    Ok(Some(n)) => {
                        assert!(n > 0 && n <= end - start, "case {case}");
                        let args = parser.args(&data[start..end]);
                        assert!(args.iter().map(<[u8]>::len).sum::<usize>() <= n);
                        start += n;
                    }
                    Ok(None) => break,
                    Err(_) => break 'reads,
                }
            }
        }
    }
}

/// Proves: the connection logic never panics on arbitrary bytes split at
/// arbitrary points, and everything it sends back is a sequence of
/// well-formed RESP replies.
#[test]
fn server_never_panics_and_replies_are_well_formed() {
    let mut rng = Rng::new(0x5245_5350_0002);
    for _ in 0..6_000 {
        let data = if rng.one_in(3) {
            let mut b = concat(&gen_stream(&mut rng));
            mutate(&mut rng, &mut b);
            b
        } else {
            arbitrary_bytes(&mut rng, 4096)
        };
        let sizes = chunk_sizes(&mut rng, data.len());
        let (out, _) = Server::new().feed(&data, &sizes);
        count_replies(&out);
    }
}

/// Proves: how a stream is split into reads does not matter. Pipelined
/// streams of random valid commands (arrays of binary bulk strings,
/// inline lines, empty commands) cut into random chunks parse to exactly
/// the generated arguments, and the server sends byte for byte the replies
/// of the whole stream: one per non-empty command.
#[test]
fn valid_streams_split_anywhere_answer_the_same() {
    let mut rng = Rng::new(0x5245_5350_0003);
    for case in 0..3_000 {
        let cmds = gen_stream(&mut rng);
        let data = concat(&cmds);
        let sizes = chunk_sizes(&mut rng, data.len());

        let expected: Vec<Vec<Vec<u8>>> = cmds.iter().map(|c| c.args.clone()).collect();
        let (parsed, left) = parse_in_chunks(&data, &sizes);
        assert!(
            parsed == expected && left == 0,
            "case {case}: split {sizes:?} of {:?}",
            String::from_utf8_lossy(&data)
        );

        let (whole, whole_closed) = Server::new().feed(&data, &[]);
        assert!(!whole_closed, "case {case}");
        let non_empty = cmds.iter().filter(|c| !c.args.is_empty()).count();
        assert_eq!(count_replies(&whole), non_empty, "case {case}");
        let (split, split_closed) = Server::new().feed(&data, &sizes);
        assert!(
            split == whole && !split_closed,
            "case {case}: split {sizes:?} of {:?}",
            String::from_utf8_lossy(&data)
        );
    }
}

/// Proves: split-independence holds for invalid input too. Any stream
/// (arbitrary or mutated valid bytes, inline lines around
/// [`MAX_INLINE_LEN`]) gives the same replies, protocol error included, and
/// the same close decision however it is cut.
#[test]
fn arbitrary_streams_split_anywhere_answer_the_same() {
    let mut rng = Rng::new(0x5245_5350_0004);
    for case in 0..6_000 {
        let data = match rng.below(32) {
            // An inline line around the limit, maybe with commands before
            // it and mutations anywhere.
            0 => {
                let mut b = concat(&gen_stream(&mut rng));
                let len = MAX_INLINE_LEN - 100 + rng.below(200);
                while b.len() < len {
                    b.push(b"abc \t\r"[rng.below(6)]);
                }
                b.push(b'\n');
                mutate(&mut rng, &mut b);
                b
            }
            1..=15 => {
                let mut b = concat(&gen_stream(&mut rng));
                mutate(&mut rng, &mut b);
                b
            }
            _ => arbitrary_bytes(&mut rng, 4096),
        };
        let whole = Server::new().feed(&data, &[]);
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

/// Proves: a truncated command is never run. For a random valid pipelined
/// stream cut at a random point (and split at random below it), the
/// replies are exactly those of the commands that lie wholly before the
/// cut; and every strict prefix of a command parses as incomplete.
#[test]
fn truncated_commands_are_not_run() {
    let mut rng = Rng::new(0x5245_5350_0005);
    for case in 0..3_000 {
        let cmds = gen_stream(&mut rng);
        let data = concat(&cmds);
        // Each command's end and reply, run one at a time in order.
        let mut store = Store::new();
        let mut parser = CommandParser::new();
        let mut end = 0;
        let answers: Vec<(usize, Vec<u8>)> = cmds
            .iter()
            .map(|c| {
                let mut out = Vec::new();
                let progress = serve(&mut store, &mut parser, &c.bytes, &mut out);
                assert_eq!(progress.consumed, c.bytes.len());
                end += c.bytes.len();
                (end, out)
            })
            .collect();
        for _ in 0..3 {
            let cut = rng.below(data.len() + 1);
            let expected: Vec<u8> = answers
                .iter()
                .take_while(|(end, _)| *end <= cut)
                .flat_map(|(_, out)| out.iter().copied())
                .collect();
            let sizes = chunk_sizes(&mut rng, cut);
            let (out, closed) = Server::new().feed(&data[..cut], &sizes);
            assert!(
                out == expected && !closed,
                "case {case}: cut at {cut} of {:?}",
                String::from_utf8_lossy(&data)
            );
        }
        let first = &cmds[0].bytes;
        let cut = rng.below(first.len());
        assert_eq!(
            CommandParser::new().parse(&first[..cut]),
            Ok(None),
            "case {case}: {:?}",
            String::from_utf8_lossy(&first[..cut])
        );
    }
}

/// An oversize declaration or line, the offset at which its error is
/// provable (the buffered bytes at which the parser must refuse it), and
/// the error reply.
fn gen_oversize(rng: &mut Rng) -> (Vec<u8>, usize, &'static [u8]) {
    const BULK: &[u8] = b"-ERR Protocol error: invalid bulk length\r\n";
    const ARRAY: &[u8] = b"-ERR Protocol error: invalid multibulk length\r\n";
    const INLINE: &[u8] = b"-ERR Protocol error: too big inline request\r\n";
    // A length over the limit: just over, anywhere up to i64::MAX, past
    // i64, or a run of more digits than any i64 has.
    let too_big = |rng: &mut Rng, limit: usize| -> Vec<u8> {
        match rng.below(4) {
            0 => (limit + 1 + rng.below(3)).to_string().into_bytes(),
            1 => (limit as u64 + 1 + rng.next_u64() % (i64::MAX as u64 - limit as u64))
                .to_string()
                .into_bytes(),
            2 => b"99999999999999999999".to_vec(),
            _ => (0..rng.range(21, 200))
                .map(|_| b'1' + rng.below(9) as u8)
                .collect(),
        }
    };
    // Where `header` refuses a length: at its CRLF, or at the 21st
    // character if it has more than 20.
    let refused_at = |start: usize, digits: &[u8]| -> usize {
        if digits.len() > 20 {
            start + 1 + 21
        } else {
            start + 1 + digits.len() + 2
        }
    };
    let mut b = Vec::new();
    match rng.below(3) {
        0 => {
            let n = rng.range(1, 5);
            write_array_len(&mut b, n);
            for _ in 0..rng.below(n) {
                let len = rng.below(100);
                write_bulk(&mut b, &vec![b'x'; len]);
            }
            let start = b.len();
            let digits = if rng.one_in(4) {
                format!("-{}", rng.range(2, 1000)).into_bytes()
            } else {
                too_big(rng, MAX_BULK_LEN)
            };
            b.push(b'$');
            b.extend_from_slice(&digits);
            b.extend_from_slice(b"\r\n");
            let at = refused_at(start, &digits);
            b.resize(b.len() + rng.below(200_000), b'y');
            (b, at, BULK)
        }
        1 => {
            let digits = if rng.one_in(4) {
                format!("-{}", rng.range(2, 1000)).into_bytes()
            } else {
                too_big(rng, MAX_ARRAY_LEN)
            };
            b.push(b'*');
            b.extend_from_slice(&digits);
            b.extend_from_slice(b"\r\n");
            let at = refused_at(0, &digits);
            while b.len() < at + rng.below(200_000) {
                b.extend_from_slice(b"$1\r\nz\r\n");
            }
            (b, at, ARRAY)
        }
        _ => {
            let len = MAX_INLINE_LEN + rng.below(100_000);
            while b.len() < len {
                b.push(b"abc \t\r"[rng.below(6)]);
            }
            if b[0] == b'*' {
                b[0] = b'a';
            }
            (b, MAX_INLINE_LEN, INLINE)
        }
    }
}

/// Proves: memory stays bounded. A bulk length or array length over its
/// limit (or negative, or with more digits than an `i64`), or an inline
/// line longer than [`MAX_INLINE_LEN`], arriving in random chunk sizes
/// after random valid commands, gets no reply while unproven and the
/// protocol error and a close on the very read that brings the proof in:
/// nothing after a bad header is buffered, and the input buffer never
/// grows past twice the bytes needed to reach the verdict (one doubling).
#[test]
fn oversize_lengths_are_rejected_at_once() {
    let mut rng = Rng::new(0x5245_5350_0006);
    for case in 0..400 {
        let prefix = if rng.one_in(2) {
            let mut cmds = gen_stream(&mut rng);
            cmds.retain(|c| !c.args.is_empty());
            cmds
        } else {
            Vec::new()
        };
        let prefix_bytes = concat(&prefix);
        let (bad, refused_at, reply) = gen_oversize(&mut rng);
        let expected_prefix = Server::new().feed(&prefix_bytes, &[]).0;
        let mut data = prefix_bytes.clone();
        data.extend_from_slice(&bad);

        let mut server = Server::new();
        let mut pos = 0;
        let mut most_capacity = 0;
        while !server.closed {
            assert!(pos < data.len(), "case {case}: no verdict");
            let size = [1, 7, 100, 5000, 20000][rng.below(5)];
            let (n, out) = server.read(&data[pos..(pos + size).min(data.len())]);
            pos += n;
            most_capacity = most_capacity.max(server.input.capacity());
            let bad_bytes = pos.saturating_sub(prefix_bytes.len());
            if bad_bytes < refused_at {
                assert!(
                    !server.closed,
                    "case {case}: closed at {bad_bytes} of {refused_at}"
                );
            } else {
                assert!(
                    server.closed && out.ends_with(reply),
                    "case {case}: {bad_bytes} bytes in, verdict due at {refused_at}: {:?}",
                    String::from_utf8_lossy(&out)
                );
            }
        }
        assert!(
            most_capacity <= 2 * (prefix_bytes.len() + refused_at).max(READ_BUF),
            "case {case}: buffer grew to {most_capacity} for a verdict at {refused_at}"
        );
        let mut expected = expected_prefix;
        expected.extend_from_slice(reply);
        assert!(
            server.out == expected,
            "case {case}: {:?}",
            String::from_utf8_lossy(&server.out)
        );
    }
}

/// Proves: a declared length within the limits reserves nothing. The
/// largest bulk string and array counts a client may declare, followed by
/// a trickle of bytes, leave the input buffer at its starting size and get
/// no reply: memory follows the bytes that arrive, not the declaration.
#[test]
fn declared_lengths_allocate_nothing_up_front() {
    let mut rng = Rng::new(0x5245_5350_0007);
    for case in 0..200 {
        let mut data = format!("*{MAX_ARRAY_LEN}\r\n").into_bytes();
        for _ in 0..rng.below(50) {
            write_bulk(&mut data, b"arg");
        }
        data.extend_from_slice(format!("${}\r\n", MAX_BULK_LEN - rng.below(10)).as_bytes());
        data.resize(data.len() + rng.below(READ_BUF / 2), b'v');
        let sizes = chunk_sizes(&mut rng, data.len());
        let mut server = Server::new();
        let mut pos = 0;
        for size in sizes {
            let (n, out) = server.read(&data[pos..pos + size]);
            assert_eq!(n, size);
            pos += n;
            assert!(out.is_empty() && !server.closed, "case {case}");
            assert_eq!(server.input.capacity(), READ_BUF, "case {case}");
        }
    }
}

/// Proves: resuming is the same as starting over. A parser fed a growing
/// buffer (a random valid, mutated or arbitrary command, cut at random
/// points) answers after a cut exactly what a fresh parser answers for the
/// same bytes, with the same arguments (checked at some 40 random cuts and
/// at the one that completes or fails); and its total work stays linear:
/// a few looks at each byte, plus at most one unfinished length header
/// (22 bytes) read again per call.
#[test]
fn resumed_parse_equals_fresh_parse_on_every_prefix() {
    let mut rng = Rng::new(0x5245_5350_0008);
    for case in 0..4_000 {
        let data = match rng.below(3) {
            0 => gen_command(&mut rng).bytes,
            1 => {
                let mut b = gen_command(&mut rng).bytes;
                mutate(&mut rng, &mut b);
                b
            }
            _ => arbitrary_bytes(&mut rng, 4096),
        };
        if data.is_empty() {
            continue;
        }
        let sizes = chunk_sizes(&mut rng, data.len());
        let calls = sizes.len();
        let every = calls / 40 + 1;
        let mut parser = CommandParser::new();
        let mut end = 0;
        let mut work = 0;
        for size in sizes {
            end += size;
            let before = crate::resp::work();
            let resumed = parser.parse(&data[..end]);
            work += crate::resp::work() - before;
            if resumed == Ok(None) && !rng.one_in(every) {
                continue;
            }
            let mut fresh_parser = CommandParser::new();
            let fresh = fresh_parser.parse(&data[..end]);
            assert!(
                resumed == fresh,
                "case {case}: after {end} bytes of {:?}: resumed {resumed:?}, fresh {fresh:?}",
                String::from_utf8_lossy(&data)
            );
            if let Ok(Some(_)) = resumed {
                let args: Vec<&[u8]> = parser.args(&data).iter().collect();
                let fresh_args: Vec<&[u8]> = fresh_parser.args(&data).iter().collect();
                assert_eq!(args, fresh_args, "case {case}");
            }
            if resumed != Ok(None) {
                break;
            }
        }
        assert!(
            work <= 3 * end + 23 * calls,
            "case {case}: {work} bytes looked at for {end} in {calls} calls"
        );
    }
}
