//! The key-value store and the commands that act on it, independent of any
//! runtime: [`serve`] turns the bytes a connection has buffered into the
//! replies to send back, so the io_uring server and the tokio peer behave
//! identically.
//!
//! Commands (names are case-insensitive): `PING [message]`, `ECHO message`,
//! `SET key value [NX|XX] [GET]`, `GET key`, `DEL key...`, `EXISTS key...`,
//! `INCR`/`DECR key`, `INCRBY`/`DECRBY key n`, `COMMAND ...` (an empty
//! array, which is all stock clients need), `CONFIG GET` (only `save` and
//! `appendonly`, which `redis-benchmark` asks for), and `QUIT`. Keys never
//! expire, so `SET`'s `EX`/`PX`/`EXAT`/`PXAT`/`KEEPTTL` options get an
//! error reply saying so.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};

use crate::resp::{
    parse_i64, push_i64, write_array_len, write_bulk, write_error, write_integer, write_null,
    write_simple, Args, CommandParser,
};

/// Once a batch of replies is this large, [`serve`] stops to let the
/// caller send it before running more commands, so a pipeline of large
/// `GET`s cannot grow the output buffer without bound.
pub(crate) const OUTPUT_HIGH_WATER: usize = 1024 * 1024;

/// What the connection should do after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Go on reading commands.
    Continue,
    /// Send the replies so far, then close (`QUIT`).
    Close,
}

/// An in-memory map from byte-string keys to byte-string values.
#[derive(Debug, Default)]
pub(crate) struct Store {
    map: HashMap<Vec<u8>, Vec<u8>, KeyHash>,
}

/// The map's hasher: std's (SipHash-1-3 under a random key, so clients
/// cannot choose keys that collide) fed only the bytes of a key. A byte
/// string's `Hash` first writes its length, which keeps the parts of a
/// composite key (a tuple of strings) apart; every key here is one byte
/// string, and SipHash's last round mixes in the length anyway, so that
/// write is skipped: it was a third of the hashing work per command.
#[derive(Debug, Default, Clone)]
pub(crate) struct KeyHash(RandomState);

impl BuildHasher for KeyHash {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(self.0.build_hasher())
    }
}

/// See [`KeyHash`].
pub(crate) struct KeyHasher(std::hash::DefaultHasher);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }

    /// The length prefix of a byte string: left out (see [`KeyHash`]).
    fn write_usize(&mut self, _len: usize) {}

    fn finish(&self) -> u64 {
        self.0.finish()
    }
}

impl Store {
    /// An empty store.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Runs one command (`args[0]` is its name, `args` is not empty) and
    /// appends its reply to `out`.
    pub(crate) fn execute(&mut self, args: Args<'_>, out: &mut Vec<u8>) -> Flow {
        let name = args.get(0);
        let key = name_key(name);
        let n = args.len();
        match key {
            cmd::GET if n == 2 => match self.map.get(args.get(1)) {
                Some(v) => write_bulk(out, v),
                None => write_null(out),
            },
            cmd::SET if n >= 3 => self.set(args, out),
            cmd::PING if n == 1 => write_simple(out, b"PONG"),
            cmd::PING if n == 2 => write_bulk(out, args.get(1)),
            cmd::ECHO if n == 2 => write_bulk(out, args.get(1)),
            cmd::DEL if n >= 2 => {
                let removed = args
                    .iter()
                    .skip(1)
                    .filter(|k| self.map.remove(*k).is_some());
                write_integer(out, removed.count() as i64);
            }
            cmd::EXISTS if n >= 2 => {
                let found = args.iter().skip(1).filter(|k| self.map.contains_key(*k));
                write_integer(out, found.count() as i64);
            }
            cmd::INCR if n == 2 => self.incr_by(args.get(1), 1, out),
            cmd::DECR if n == 2 => self.incr_by(args.get(1), -1, out),
            cmd::INCRBY | cmd::DECRBY if n == 3 => match parse_i64(args.get(2)) {
                Some(by) if key == cmd::INCRBY => self.incr_by(args.get(1), by, out),
                Some(by) => match by.checked_neg() {
                    Some(by) => self.incr_by(args.get(1), by, out),
                    None => write_error(out, b"ERR decrement would overflow"),
                },
                None => write_error(out, NOT_AN_INTEGER),
            },
            // Stock clients ask for the command table; an empty one is a
            // valid answer (for COMMAND DOCS, COMMAND INFO and the rest too).
            cmd::COMMAND => write_array_len(out, 0),
            cmd::CONFIG if n >= 2 && args.get(1).eq_ignore_ascii_case(b"GET") => {
                config_get(args, out)
            }
            cmd::CONFIG if n >= 2 => {
                let mut msg = b"ERR unsupported CONFIG subcommand '".to_vec();
                push_quoted(&mut msg, args.get(1));
                msg.push(b'\'');
                write_error(out, &msg);
            }
            cmd::QUIT => {
                write_simple(out, b"OK");
                return Flow::Close;
            }
            cmd::GET
            | cmd::SET
            | cmd::PING
            | cmd::ECHO
            | cmd::DEL
            | cmd::EXISTS
            | cmd::INCR
            | cmd::DECR
            | cmd::INCRBY
            | cmd::DECRBY
            | cmd::CONFIG => {
                let mut msg = b"ERR wrong number of arguments for '".to_vec();
                msg.extend(name.iter().map(u8::to_ascii_lowercase));
                msg.extend_from_slice(b"' command");
                write_error(out, &msg);
            }
            _ => unknown_command(args, out),
        }
        Flow::Continue
    }

    /// `SET key value [NX|XX] [GET]`.
    fn set(&mut self, args: Args<'_>, out: &mut Vec<u8>) {
        let (mut nx, mut xx, mut get) = (false, false, false);
        for opt in args.iter().skip(3) {
            let flag = |name: &[u8]| opt.eq_ignore_ascii_case(name);
            if flag(b"NX") && !xx {
                nx = true;
            } else if flag(b"XX") && !nx {
                xx = true;
            } else if flag(b"GET") {
                get = true;
            } else if [&b"EX"[..], b"PX", b"EXAT", b"PXAT", b"KEEPTTL"]
                .iter()
                .any(|o| flag(o))
            {
                let mut msg = b"ERR SET option '".to_vec();
                push_quoted(&mut msg, opt);
                msg.extend_from_slice(b"' is not supported: this server keeps no expiry times");
                write_error(out, &msg);
                return;
            } else {
                write_error(out, b"ERR syntax error");
                return;
            }
        }
        let (key, value) = (args.get(1), args.get(2));
        match self.map.get_mut(key) {
            Some(old) => {
                if get {
                    write_bulk(out, old);
                }
                if nx {
                    if !get {
                        write_null(out);
                    }
                    return;
                }
                // Overwrite in place: no allocation when the value fits.
                old.clear();
                old.extend_from_slice(value);
            }
            None => {
                if get {
                    write_null(out);
                }
                if xx {
                    if !get {
                        write_null(out);
                    }
                    return;
                }
                self.map.insert(key.to_vec(), value.to_vec());
            }
        }
        if !get {
            write_simple(out, b"OK");
        }
    }

    /// `INCR`, `DECR`, `INCRBY`, `DECRBY`: adds `by` to the integer stored
    /// at `key` (0 if missing) and replies with the result.
    fn incr_by(&mut self, key: &[u8], by: i64, out: &mut Vec<u8>) {
        let current = match self.map.get(key) {
            None => 0,
            Some(v) => match parse_i64(v) {
                Some(n) => n,
                None => {
                    write_error(out, NOT_AN_INTEGER);
                    return;
                }
            },
        };
        let Some(next) = current.checked_add(by) else {
            write_error(out, b"ERR increment or decrement would overflow");
            return;
        };
        let value = match self.map.get_mut(key) {
            Some(v) => v,
            None => self.map.entry(key.to_vec()).or_default(),
        };
        value.clear();
        push_i64(value, next);
        write_integer(out, next);
    }
}

/// A command name of up to 7 bytes, upper-cased, with its length in the
/// last byte, as one integer: the match on command names then compares
/// integers instead of calling `memcmp` once per arm. 0 for a longer name
/// (no command is).
fn name_key(name: &[u8]) -> u64 {
    if name.len() > 7 {
        return 0;
    }
    let mut b = [0u8; 8];
    for (dst, src) in b.iter_mut().zip(name) {
        *dst = src.to_ascii_uppercase();
    }
    b[7] = name.len() as u8;
    u64::from_le_bytes(b)
}

/// [`name_key`] of an upper-case name, at compile time.
const fn key_of(name: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let mut i = 0;
    while i < name.len() {
        b[i] = name[i];
        i += 1;
    }
    b[7] = name.len() as u8;
    u64::from_le_bytes(b)
}

/// The [`name_key`]s of the commands.
mod cmd {
    use super::key_of;

    pub(super) const GET: u64 = key_of(b"GET");
    pub(super) const SET: u64 = key_of(b"SET");
    pub(super) const PING: u64 = key_of(b"PING");
    pub(super) const ECHO: u64 = key_of(b"ECHO");
    pub(super) const DEL: u64 = key_of(b"DEL");
    pub(super) const EXISTS: u64 = key_of(b"EXISTS");
    pub(super) const INCR: u64 = key_of(b"INCR");
    pub(super) const DECR: u64 = key_of(b"DECR");
    pub(super) const INCRBY: u64 = key_of(b"INCRBY");
    pub(super) const DECRBY: u64 = key_of(b"DECRBY");
    pub(super) const COMMAND: u64 = key_of(b"COMMAND");
    pub(super) const CONFIG: u64 = key_of(b"CONFIG");
    pub(super) const QUIT: u64 = key_of(b"QUIT");
}

/// The reply to arithmetic on a value that is not a decimal `i64`.
const NOT_AN_INTEGER: &[u8] = b"ERR value is not an integer or out of range";

/// Appends at most 128 bytes of client input for quoting in an error.
fn push_quoted(msg: &mut Vec<u8>, arg: &[u8]) {
    msg.extend_from_slice(&arg[..arg.len().min(128)]);
}

/// The persistence settings this server reports: it has none. These are
/// what `redis-benchmark` asks for at start (it warns if they are missing).
const CONFIG: [(&[u8], &[u8]); 2] = [(b"save", b""), (b"appendonly", b"no")];

/// `CONFIG GET name...`: the name/value pairs of the [`CONFIG`] settings
/// named exactly (case-insensitively; no glob patterns); nothing else.
fn config_get(args: Args<'_>, out: &mut Vec<u8>) {
    let found = || {
        CONFIG
            .iter()
            .filter(move |(name, _)| args.iter().skip(2).any(|a| a.eq_ignore_ascii_case(name)))
    };
    write_array_len(out, 2 * found().count());
    for (name, value) in found() {
        write_bulk(out, name);
        write_bulk(out, value);
    }
}

/// Replies `-ERR unknown command 'name', with args beginning with: ...`,
/// in Redis's words.
fn unknown_command(args: Args<'_>, out: &mut Vec<u8>) {
    let mut msg = b"ERR unknown command '".to_vec();
    push_quoted(&mut msg, args.get(0));
    msg.extend_from_slice(b"', with args beginning with: ");
    for arg in args.iter().skip(1) {
        if msg.len() > 256 {
            break;
        }
        msg.push(b'\'');
        push_quoted(&mut msg, arg);
        msg.extend_from_slice(b"' ");
    }
    write_error(out, &msg);
}

/// How far [`serve`] got through a connection's buffered input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Progress {
    /// Bytes of input fully handled (complete commands); the rest is the
    /// start of a command still arriving.
    pub consumed: usize,
    /// The connection must close once `out` is sent (`QUIT`, or a protocol
    /// error, which has been answered with an error reply).
    pub close: bool,
    /// `serve` stopped at [`OUTPUT_HIGH_WATER`] with complete commands
    /// still in the input: send `out`, then call it again on the rest
    /// before reading more.
    pub more: bool,
}

/// Runs every complete command at the start of `input`, in order, appending
/// their replies to `out`. `parser` carries a partial command from one call
/// to the next; `input` must start where the previous call's `consumed`
/// ended.
pub(crate) fn serve(
    store: &mut Store,
    parser: &mut CommandParser,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Progress {
    let mut pos = 0;
    loop {
        if out.len() >= OUTPUT_HIGH_WATER {
            return Progress {
                consumed: pos,
                close: false,
                more: true,
            };
        }
        match parser.parse(&input[pos..]) {
            Ok(Some(n)) => {
                let args = parser.args(&input[pos..]);
                pos += n;
                if !args.is_empty() && store.execute(args, out) == Flow::Close {
                    return Progress {
                        consumed: pos,
                        close: true,
                        more: false,
                    };
                }
            }
            Ok(None) => {
                return Progress {
                    consumed: pos,
                    close: false,
                    more: false,
                }
            }
            Err(e) => {
                let msg = format!("ERR {e}");
                write_error(out, msg.as_bytes());
                return Progress {
                    consumed: input.len(),
                    close: true,
                    more: false,
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::{parse_value, Value};

    /// Sends `input` through `serve` on `store` and decodes the replies.
    fn run(store: &mut Store, input: &[u8]) -> (Vec<String>, Progress) {
        let mut parser = CommandParser::new();
        let mut out = Vec::new();
        let progress = serve(store, &mut parser, input, &mut out);
        (decode_all(&out), progress)
    }

    /// Every reply in `out`, rendered compactly: `+OK`, `-ERR ..`, `:1`,
    /// `$value`, `$nil`, `*n`.
    fn decode_all(out: &[u8]) -> Vec<String> {
        let mut replies = Vec::new();
        let mut pos = 0;
        while pos < out.len() {
            let (v, n) = parse_value(&out[pos..]).unwrap().expect("a complete reply");
            replies.push(match v {
                Value::Simple(s) => format!("+{}", String::from_utf8_lossy(s)),
                Value::Error(s) => format!("-{}", String::from_utf8_lossy(s)),
                Value::Integer(i) => format!(":{i}"),
                Value::Bulk(Some(b)) => format!("${}", String::from_utf8_lossy(b)),
                Value::Bulk(None) => "$nil".to_string(),
                Value::Array(Some(items)) => format!("*{}", items.len()),
                Value::Array(None) => "*nil".to_string(),
            });
            pos += n;
        }
        replies
    }

    /// Runs inline commands (one per line) on a fresh store.
    fn replies(lines: &str) -> Vec<String> {
        run(&mut Store::new(), lines.as_bytes()).0
    }

    #[test]
    fn keys_hash_by_their_bytes_alone() {
        let build = KeyHash::default();
        let key = b"key:000000000042".to_vec();
        let mut bytes_only = build.build_hasher();
        bytes_only.write(&key);
        // The length prefix is left out, for an owned key and a borrowed one.
        assert_eq!(build.hash_one(&key), bytes_only.finish());
        assert_eq!(build.hash_one(&key[..]), bytes_only.finish());
        let mut other = build.build_hasher();
        other.write(b"key:000000000043");
        assert_ne!(build.hash_one(&key), other.finish());
        // Lookups by a slice find the owned key.
        let mut a = Store::new();
        a.map.insert(key.clone(), b"v".to_vec());
        assert_eq!(a.map.get(&key[..]).map(Vec::as_slice), Some(&b"v"[..]));
    }

    #[test]
    fn set_get_and_missing_keys() {
        assert_eq!(
            replies("SET k v\r\nGET k\r\nGET nope\r\nset k longer-value\r\nget k\r\n"),
            ["+OK", "$v", "$nil", "+OK", "$longer-value"]
        );
    }

    #[test]
    fn set_options() {
        assert_eq!(
            replies(
                "SET k 1 NX\r\nSET k 2 NX\r\nSET k 3 XX\r\nSET j 4 XX\r\nSET k 5 GET\r\n\
                 SET j 6 GET\r\nSET k 7 nx get\r\nSET x 8 xx GET\r\nGET k\r\nGET x\r\n"
            ),
            ["+OK", "$nil", "+OK", "$nil", "$3", "$nil", "$5", "$nil", "$5", "$nil"]
        );
        let r = replies("SET k v EX 10\r\nSET k v NX XX\r\nSET k v BOGUS\r\nGET k\r\n");
        assert_eq!(
            r[0],
            "-ERR SET option 'EX' is not supported: this server keeps no expiry times"
        );
        assert_eq!(r[1..], ["-ERR syntax error", "-ERR syntax error", "$nil"]);
    }

    #[test]
    fn del_and_exists_count_keys() {
        assert_eq!(
            replies("SET a 1\r\nSET b 2\r\nEXISTS a b c a\r\nDEL a c\r\nEXISTS a b\r\nDEL a\r\n"),
            ["+OK", "+OK", ":3", ":1", ":1", ":0"]
        );
    }

    #[test]
    fn incr_and_friends() {
        assert_eq!(
            replies(
                "INCR n\r\nINCR n\r\nDECR n\r\nINCRBY n 10\r\nDECRBY n -5\r\nGET n\r\n\
                 DECR m\r\nINCRBY n x\r\n"
            ),
            [
                ":1",
                ":2",
                ":1",
                ":11",
                ":16",
                "$16",
                ":-1",
                "-ERR value is not an integer or out of range"
            ]
        );
        let not_int = "-ERR value is not an integer or out of range";
        for value in ["abc", "1.5", "01", "+1", "99999999999999999999"] {
            let r = replies(&format!("SET n {value}\r\nINCR n\r\nGET n\r\n"));
            assert_eq!(r, ["+OK", not_int, &format!("${value}")], "{value}");
        }
        let overflow = "-ERR increment or decrement would overflow";
        let r = replies(&format!("SET n {}\r\nINCR n\r\nGET n\r\n", i64::MAX));
        assert_eq!(r, ["+OK", overflow, &format!("${}", i64::MAX)]);
        let r = replies(&format!("SET n {}\r\nDECR n\r\n", i64::MIN));
        assert_eq!(r, ["+OK", overflow]);
        let r = replies(&format!(
            "DECRBY n {}\r\nINCRBY n {}\r\n",
            i64::MIN,
            i64::MIN
        ));
        assert_eq!(
            r,
            ["-ERR decrement would overflow", &format!(":{}", i64::MIN)]
        );
    }

    #[test]
    fn ping_echo_and_case_insensitive_names() {
        assert_eq!(
            replies("PING\r\nping hi\r\nPiNg\r\nECHO x\r\necho yz\r\n"),
            ["+PONG", "$hi", "+PONG", "$x", "$yz"]
        );
    }

    #[test]
    fn command_and_config_are_empty_arrays() {
        assert_eq!(
            replies("COMMAND\r\nCOMMAND DOCS\r\ncommand count\r\nCONFIG GET maxmemory\r\n"),
            ["*0", "*0", "*0", "*0"]
        );
        // What redis-benchmark asks at start: name/value pairs.
        let mut store = Store::new();
        let (r, _) = run(
            &mut store,
            b"CONFIG GET save\r\nconfig get APPENDONLY save x\r\n",
        );
        assert_eq!(r, ["*2", "*4"]);
        let mut out = Vec::new();
        config_get(CommandParser::new().args(b""), &mut out);
        let input = b"CONFIG GET appendonly\r\n";
        let mut parser = CommandParser::new();
        assert_eq!(parser.parse(input), Ok(Some(input.len())));
        config_get(parser.args(input), &mut out);
        assert_eq!(out, b"*0\r\n*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n");
        assert_eq!(
            replies("CONFIG SET a b\r\n"),
            ["-ERR unsupported CONFIG subcommand 'SET'"]
        );
    }

    #[test]
    fn wrong_arity_and_unknown_commands() {
        assert_eq!(
            replies("GET\r\nget a b\r\nSET k\r\nPING a b\r\nECHO\r\nDEL\r\nEXISTS\r\nINCR\r\nCONFIG\r\n"),
            [
                "-ERR wrong number of arguments for 'get' command",
                "-ERR wrong number of arguments for 'get' command",
                "-ERR wrong number of arguments for 'set' command",
                "-ERR wrong number of arguments for 'ping' command",
                "-ERR wrong number of arguments for 'echo' command",
                "-ERR wrong number of arguments for 'del' command",
                "-ERR wrong number of arguments for 'exists' command",
                "-ERR wrong number of arguments for 'incr' command",
                "-ERR wrong number of arguments for 'config' command",
            ]
        );
        assert_eq!(
            replies("FOO a b\r\nAVERYLONGCOMMANDNAMEINDEED\r\n"),
            [
                "-ERR unknown command 'FOO', with args beginning with: 'a' 'b' ",
                "-ERR unknown command 'AVERYLONGCOMMANDNAMEINDEED', with args beginning with: ",
            ]
        );
        // Client bytes quoted in an error cannot break the reply's line.
        let mut store = Store::new();
        let (r, _) = run(&mut store, b"*2\r\n$4\r\nA\r\nB\r\n$3\r\nx\ny\r\n");
        assert_eq!(
            r,
            ["-ERR unknown command 'A  B', with args beginning with: 'x y' "]
        );
    }

    #[test]
    fn pipelined_replies_in_order() {
        let mut input = String::new();
        let mut want = Vec::new();
        for i in 0..500 {
            input.push_str(&format!(
                "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n{i}\r\nINCR k\r\n",
                i.to_string().len()
            ));
            want.push("+OK".to_string());
            want.push(format!(":{}", i + 1));
        }
        let (r, progress) = run(&mut Store::new(), input.as_bytes());
        assert_eq!(r, want);
        assert_eq!(
            progress,
            Progress {
                consumed: input.len(),
                close: false,
                more: false
            }
        );
    }

    #[test]
    fn partial_command_waits_for_the_rest() {
        let mut store = Store::new();
        let mut parser = CommandParser::new();
        let input = b"PING\r\n*2\r\n$4\r\nECHO\r\n$5\r\nhel";
        let mut out = Vec::new();
        let p = serve(&mut store, &mut parser, input, &mut out);
        assert_eq!((p.consumed, p.close, p.more), (6, false, false));
        assert_eq!(decode_all(&out), ["+PONG"]);
        out.clear();
        let p = serve(
            &mut store,
            &mut parser,
            b"*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\n",
            &mut out,
        );
        assert_eq!(decode_all(&out), ["$hello"]);
        assert_eq!(p.consumed, 25);
    }

    #[test]
    fn protocol_error_replies_then_closes() {
        let (r, p) = run(&mut Store::new(), b"PING\r\n*1\r\n:1\r\nPING\r\n");
        assert_eq!(r, ["+PONG", "-ERR Protocol error: expected '$', got ':'"]);
        assert!(p.close);
        let (r, p) = run(&mut Store::new(), b"*-5\r\n");
        assert_eq!(r, ["-ERR Protocol error: invalid multibulk length"]);
        assert!(p.close);
    }

    #[test]
    fn quit_replies_ok_and_closes() {
        let input = b"PING\r\nQUIT\r\nPING\r\n";
        let (r, p) = run(&mut Store::new(), input);
        assert_eq!(r, ["+PONG", "+OK"]);
        assert_eq!((p.consumed, p.close), (12, true));
    }

    #[test]
    fn empty_commands_get_no_reply() {
        assert_eq!(replies("\r\n*0\r\n*-1\r\nPING\r\n"), ["+PONG"]);
    }

    /// A pipeline of large GETs stops at the high-water mark so the caller
    /// can send before going on; together the calls answer everything.
    #[test]
    fn output_high_water_splits_a_batch() {
        let mut store = Store::new();
        let big = "x".repeat(300 * 1024);
        let set = format!(
            "*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n${}\r\n{big}\r\n",
            big.len()
        );
        assert_eq!(run(&mut store, set.as_bytes()).0, ["+OK"]);
        let input = "GET big\r\n".repeat(10);
        let mut parser = CommandParser::new();
        let mut pos = 0;
        let mut calls = 0;
        let mut answered = 0;
        loop {
            let mut out = Vec::new();
            let p = serve(&mut store, &mut parser, &input.as_bytes()[pos..], &mut out);
            assert!(out.len() < OUTPUT_HIGH_WATER + big.len() + 32);
            answered += decode_all(&out).len();
            pos += p.consumed;
            calls += 1;
            if !p.more {
                break;
            }
        }
        assert_eq!((answered, pos), (10, input.len()));
        assert!(calls > 1);
    }
}
