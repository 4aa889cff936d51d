//! A randomized stress test of the runtime and `net`'s TCP types (the
//! reliability issue): thousands of connections with random payload sizes,
//! random timeouts that abandon connects, accepts, reads and writes
//! mid-flight, and random resets by either peer, for a bounded time.
//!
//! * A server runtime on its own thread accepts with `accept` futures
//!   wrapped in short random timeouts (abandoned at random) and with
//!   multishot `incoming` streams dropped after some connections; each
//!   connection is served by a task that reads length-prefixed requests
//!   (header: connection id, exchange number, length) and answers each with
//!   the same header and the payload reversed, some of its reads and writes
//!   wrapped in random timeouts that abandon them, and resets at random
//!   points. Payloads are cut from a random pool at an offset that depends
//!   on the connection and the exchange, so a response made of stale or
//!   misrouted data does not match.
//! * A client runtime on another thread keeps `STRESS_CONNS` (300)
//!   connections going, each replaced as it finishes, until `STRESS_SECS`
//!   (5 s) have passed. Each one does 1 to 8 exchanges of 1 byte to 256 KiB
//!   (skewed to small), with random timeouts around its connect, writes and
//!   reads, and random resets (before a request, mid-request, mid-response).
//!
//! Every decision comes from a deterministic generator seeded from
//! `STRESS_SEED` (printed at start; random if unset), so a failing run's
//! choices can be replayed (the interleaving with the kernel still varies).
//!
//! Verdicts: every response that arrives is checked byte for byte against
//! the one expected for that connection and exchange (stale or misrouted
//! data fails it), and the server checks each request's header; an
//! abandoned op or a peer gone (EOF, reset, broken pipe) ends a connection
//! and is counted by kind; any other error, any wrong byte and any panic in
//! a task fails the test. Afterwards each runtime must be at rest before it
//! is dropped (no op in flight, as many tasks alive as before: a bounded
//! wait after the last abandoned op), and once both are gone the process
//! has exactly the descriptors it had before. A summary line gives the
//! figures.
//!
//! Everything runs in one `#[test]` (the descriptor count is process-wide)
//! under `with_deadline`: `STRESS_SECS` plus a generous margin.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use integration_tests::with_deadline;
use net::{TcpListener, TcpStream};
use runtime::buf::IoBuf;
use runtime::time::{sleep, timeout, timeout_at};
use runtime::{JoinHandle, Runtime};

/// The run length when `STRESS_SECS` is not set.
const DEFAULT_SECS: f64 = 5.0;
/// Concurrent client connections when `STRESS_CONNS` is not set.
const DEFAULT_CONNS: usize = 300;
/// Added to the run length for the whole test's deadline.
const MARGIN: Duration = Duration::from_secs(120);
/// How long, after the run, tasks may take to finish.
const DRAIN: Duration = Duration::from_secs(30);
/// How long, once every task is done, ops may take to leave the ring.
const SETTLE: Duration = Duration::from_secs(10);
/// The largest payload.
const MAX_PAYLOAD: usize = 256 * 1024;
/// The most exchanges on one connection.
const MAX_EXCHANGES: u64 = 8;
/// Per mille of the ops of a faulty connection that get a random time
/// limit (and are abandoned if it passes first).
const OP_LIMIT: u64 = 120;
/// Error messages kept for the report (all are counted).
const KEEP_ERRORS: usize = 40;

/// The header of every message: magic, connection id, exchange number,
/// payload length, each a little-endian `u32`.
const HEADER: usize = 16;
/// The magic of a request.
const REQUEST: u32 = 0x5251_5453;
/// The magic of a response.
const RESPONSE: u32 = 0x5053_5452;
/// Mixed into the seed for the server's decisions.
const SERVER_SALT: u64 = 0x5345_5256_4552_0001;

// ---------------------------------------------------------------------------
// Settings, randomness, wire format
// ---------------------------------------------------------------------------

/// The settings of a run, from the environment.
#[derive(Debug, Clone, Copy)]
struct Config {
    seed: u64,
    run_for: Duration,
    conns: usize,
}

impl Config {
    fn from_env() -> Config {
        let seed = match std::env::var("STRESS_SEED") {
            Ok(s) => {
                let s = s.trim();
                let parsed = match s.strip_prefix("0x") {
                    Some(hex) => u64::from_str_radix(hex, 16),
                    None => s.parse(),
                };
                parsed.unwrap_or_else(|e| panic!("STRESS_SEED={s:?} is not a u64: {e}"))
            }
            Err(_) => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1);
                mix(nanos, u64::from(std::process::id())) >> 1
            }
        };
        let secs = match std::env::var("STRESS_SECS") {
            Ok(s) => s
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v > 0.0 && *v < 86_400.0)
                .unwrap_or_else(|| panic!("STRESS_SECS={s:?} is not a positive number")),
            Err(_) => DEFAULT_SECS,
        };
        let conns = match std::env::var("STRESS_CONNS") {
            Ok(s) => s
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=5000).contains(n))
                .unwrap_or_else(|| panic!("STRESS_CONNS={s:?} is not in 1..=5000")),
            Err(_) => DEFAULT_CONNS,
        };
        Config {
            seed,
            run_for: Duration::from_secs_f64(secs),
            conns,
        }
    }
}

/// A deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`; the modulo bias is irrelevant here).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with probability `per_mille / 1000`.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// A seed for one stream of decisions, from the run's seed and an index.
fn mix(seed: u64, index: u64) -> u64 {
    Rng::new(seed ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93)).next()
}

/// A payload length from 1 byte to 256 KiB, skewed to small: a power of
/// two picked uniformly, then a length uniformly below it.
fn payload_len(rng: &mut Rng) -> usize {
    let bits = rng.below(19);
    1 + rng.below(1 << bits) as usize
}

/// The random bytes payloads are cut from: twice the largest payload, so
/// that any payload is one contiguous piece (built once per run, cheap to
/// cut from even in a debug build).
fn make_pool(seed: u64) -> Arc<[u8]> {
    let mut rng = Rng::new(mix(seed, 0x504f_4f4c));
    let mut pool = Vec::with_capacity(2 * MAX_PAYLOAD);
    while pool.len() < 2 * MAX_PAYLOAD {
        pool.extend_from_slice(&rng.next().to_le_bytes());
    }
    pool.into()
}

/// The payload of exchange `seq` of connection `conn`: `len` bytes of the
/// pool from an offset that depends on both, so that another exchange's
/// data does not pass for this one's.
fn payload(pool: &[u8], seed: u64, conn: u32, seq: u32, len: usize) -> &[u8] {
    let offset = mix(mix(seed, u64::from(conn)), u64::from(seq)) % (MAX_PAYLOAD as u64 + 1);
    &pool[offset as usize..offset as usize + len]
}

fn header(magic: u32, conn: u32, seq: u32, len: usize) -> [u8; HEADER] {
    let mut h = [0; HEADER];
    for (i, v) in [magic, conn, seq, len as u32].into_iter().enumerate() {
        h[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
    }
    h
}

fn parse_header(h: &[u8]) -> [u32; 4] {
    let word = |i: usize| u32::from_le_bytes(h[i * 4..i * 4 + 4].try_into().unwrap());
    [word(0), word(1), word(2), word(3)]
}

/// Describes where two byte strings first differ.
fn difference(got: &[u8], want: &[u8]) -> String {
    let first = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    format!(
        "got {} bytes, want {}; first difference at byte {first} (got {:?}, want {:?})",
        got.len(),
        want.len(),
        got.get(first),
        want.get(first)
    )
}

// ---------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------

/// A random time limit for one op, with probability `per_mille` on a
/// faulty connection: zero (abandoned right after it is queued), tens of
/// microseconds, a few hundred, or milliseconds.
fn pick_limit(rng: &mut Rng, faulty: bool, per_mille: u64) -> Option<Duration> {
    if !faulty || !rng.chance(per_mille) {
        return None;
    }
    Some(match rng.below(4) {
        0 => Duration::ZERO,
        1 => Duration::from_micros(rng.below(100)),
        2 => Duration::from_micros(100 + rng.below(1_900)),
        _ => Duration::from_millis(2 + rng.below(30)),
    })
}

/// Runs `f`, within `limit` if there is one: `None` if the limit passed
/// first and `f` was dropped (abandoned).
async fn timed<F: Future>(limit: Option<Duration>, f: F) -> Option<F::Output> {
    match limit {
        None => Some(f.await),
        Some(d) => timeout(d, f).await.ok(),
    }
}

/// Whether an error only says the peer went away (closed or reset), which
/// the faults of the other side cause.
fn peer_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof
    )
}

/// Closes `stream` with a reset: `SO_LINGER` on with a zero timeout, then
/// drop (the close sends an RST instead of a FIN).
fn reset(stream: TcpStream) -> Result<(), String> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads a live linger struct of the size passed, on
    // a descriptor the stream keeps open.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(format!("SO_LINGER: {}", io::Error::last_os_error()));
    }
    drop(stream);
    Ok(())
}

// ---------------------------------------------------------------------------
// Shared bookkeeping
// ---------------------------------------------------------------------------

/// What one side counted.
#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    /// Connections established (client: connected; server: accepted).
    connections: u64,
    /// Client: exchanges whose response was verified byte for byte;
    /// server: responses written in full.
    exchanges: u64,
    /// Payload bytes of those exchanges.
    bytes: u64,
    connects_abandoned: u64,
    accepts_abandoned: u64,
    /// Multishot `incoming` streams dropped while armed.
    incoming_dropped: u64,
    reads_abandoned: u64,
    writes_abandoned: u64,
    /// Resets this side sent.
    resets: u64,
    /// Connections ended by the peer (EOF mid-exchange, reset, broken pipe).
    peer_gone: u64,
    /// Connections closed cleanly after their last exchange.
    clean_closes: u64,
    /// Accepts that failed with `ECONNABORTED` (the peer reset first).
    accepts_aborted: u64,
}

/// One runtime's state: the seed, its figures and the failures seen.
struct Side {
    name: &'static str,
    seed: u64,
    pool: Arc<[u8]>,
    figures: RefCell<Figures>,
    failures: Cell<u64>,
    errors: RefCell<Vec<String>>,
}

impl Side {
    fn new(name: &'static str, seed: u64, pool: Arc<[u8]>) -> Side {
        Side {
            name,
            seed,
            pool,
            figures: RefCell::new(Figures::default()),
            failures: Cell::new(0),
            errors: RefCell::new(Vec::new()),
        }
    }

    fn count(&self, f: impl FnOnce(&mut Figures)) {
        f(&mut self.figures.borrow_mut());
    }

    fn fail(&self, msg: String) {
        self.failures.set(self.failures.get() + 1);
        let mut errors = self.errors.borrow_mut();
        if errors.len() < KEEP_ERRORS {
            errors.push(format!("{}: {msg}", self.name));
        }
    }

    /// Records how a task ended: its own error, a panic, or nothing.
    fn record(&self, what: &str, res: Result<Result<(), String>, runtime::JoinError>) {
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.fail(format!("{what}: {e}")),
            Err(e) => self.fail(format!("{what}: task did not finish: {e}")),
        }
    }

    /// Waits (bounded) until the runtime is at rest: no op in flight and
    /// `tasks` tasks alive. Returns the figures seen last.
    async fn settle(&self, tasks: usize) -> runtime::Metrics {
        let deadline = Instant::now() + SETTLE;
        loop {
            let m = runtime::metrics();
            if m.ops_in_flight == 0 && m.tasks_alive == tasks {
                return m;
            }
            if Instant::now() >= deadline {
                self.fail(format!(
                    "not at rest {SETTLE:?} after the run: {} ops in flight, {} tasks alive \
                     (want 0 and {tasks})",
                    m.ops_in_flight, m.tasks_alive
                ));
                return m;
            }
            sleep(Duration::from_millis(1)).await;
        }
    }

    /// What the thread hands back.
    fn report(&self, metrics: runtime::Metrics) -> Report {
        Report {
            figures: *self.figures.borrow(),
            failures: self.failures.get(),
            errors: self.errors.borrow().clone(),
            metrics,
        }
    }
}

/// One side's results, sent back to the test's thread.
struct Report {
    figures: Figures,
    failures: u64,
    errors: Vec<String>,
    metrics: runtime::Metrics,
}

/// Outcome of one op that may be abandoned or meet a gone peer.
enum Step<T> {
    Done(T),
    /// The connection is over (abandoned, peer gone); already counted.
    Over,
}

// ---------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------

/// Reads exactly `len` bytes, within `limit` if any.
async fn read_exact_timed(
    side: &Side,
    stream: &TcpStream,
    len: usize,
    limit: Option<Duration>,
    what: &str,
) -> Result<Step<Vec<u8>>, String> {
    let buf = Vec::with_capacity(len).slice(..len);
    match timed(limit, stream.read_exact(buf)).await {
        None => {
            side.count(|f| f.reads_abandoned += 1);
            Ok(Step::Over)
        }
        Some((Ok(()), buf)) => Ok(Step::Done(buf.into_inner())),
        Some((Err(e), _)) if peer_gone(&e) => {
            side.count(|f| f.peer_gone += 1);
            Ok(Step::Over)
        }
        Some((Err(e), _)) => Err(format!("{what}: {e} ({:?})", e.kind())),
    }
}

/// Writes all of `buf`, within `limit` if any.
async fn write_all_timed<B: IoBuf>(
    side: &Side,
    stream: &TcpStream,
    buf: B,
    limit: Option<Duration>,
    what: &str,
) -> Result<Step<B>, String> {
    match timed(limit, stream.write_all(buf)).await {
        None => {
            side.count(|f| f.writes_abandoned += 1);
            Ok(Step::Over)
        }
        Some((Ok(()), buf)) => Ok(Step::Done(buf)),
        Some((Err(e), _)) if peer_gone(&e) => {
            side.count(|f| f.peer_gone += 1);
            Ok(Step::Over)
        }
        Some((Err(e), _)) => Err(format!("{what}: {e} ({:?})", e.kind())),
    }
}

/// After an abandoned op: drop the stream, with a reset half the time.
fn give_up(side: &Side, rng: &mut Rng, stream: TcpStream) -> Result<(), String> {
    if rng.chance(500) {
        side.count(|f| f.resets += 1);
        reset(stream)
    } else {
        drop(stream);
        Ok(())
    }
}

/// Serves one connection: answers requests until the client closes.
async fn serve_conn(side: Rc<Side>, stream: TcpStream, index: u64) -> Result<(), String> {
    let side = &*side;
    let mut rng = Rng::new(mix(side.seed ^ SERVER_SALT, index));
    let faulty = rng.chance(250);
    let mut conn = None;
    let mut seq = 0u32;
    loop {
        // The next request's header; EOF before it is the clean end.
        let limit = pick_limit(&mut rng, faulty, OP_LIMIT);
        let buf = Vec::with_capacity(HEADER).slice(..HEADER);
        let head = match timed(limit, stream.read_exact(buf)).await {
            None => {
                side.count(|f| f.reads_abandoned += 1);
                return give_up(side, &mut rng, stream);
            }
            Some((Ok(()), buf)) => buf.into_inner(),
            Some((Err(e), buf))
                if e.kind() == io::ErrorKind::UnexpectedEof && buf.get_ref().is_empty() =>
            {
                side.count(|f| f.clean_closes += 1);
                return Ok(());
            }
            Some((Err(e), _)) if peer_gone(&e) => {
                side.count(|f| f.peer_gone += 1);
                return Ok(());
            }
            Some((Err(e), _)) => return Err(format!("reading header {seq}: {e} ({:?})", e.kind())),
        };
        let [magic, id, got_seq, len] = parse_header(&head);
        let len = len as usize;
        if magic != REQUEST
            || got_seq != seq
            || len == 0
            || len > MAX_PAYLOAD
            || conn.is_some_and(|c| c != id)
        {
            return Err(format!(
                "bad request header {head:02x?} (want exchange {seq} of connection {conn:?}): \
                 stale or misrouted data"
            ));
        }
        conn = Some(id);

        let limit = pick_limit(&mut rng, faulty, OP_LIMIT);
        let what = format!("reading request {seq} of connection {id}");
        let data = match read_exact_timed(side, &stream, len, limit, &what).await? {
            Step::Done(d) => d,
            Step::Over => return give_up(side, &mut rng, stream),
        };

        let fault = if faulty { rng.below(1000) } else { 1000 };
        if fault < 40 {
            // Reset instead of answering.
            side.count(|f| f.resets += 1);
            return reset(stream);
        }
        let mut resp = Vec::with_capacity(HEADER + len);
        resp.extend_from_slice(&header(RESPONSE, id, seq, len));
        // The answer is the payload reversed.
        let mut data = data;
        data.reverse();
        resp.extend_from_slice(&data);
        let what = format!("writing response {seq} of connection {id}");
        if fault < 80 || rng.chance(100) {
            // In two parts, with a reset in between on a fault.
            let cut = 1 + rng.below(resp.len() as u64 - 1) as usize;
            let limit = pick_limit(&mut rng, faulty, OP_LIMIT);
            let resp = match write_all_timed(side, &stream, resp.slice(..cut), limit, &what).await?
            {
                Step::Done(s) => s.into_inner(),
                Step::Over => return give_up(side, &mut rng, stream),
            };
            if fault < 80 {
                side.count(|f| f.resets += 1);
                return reset(stream);
            }
            let limit = pick_limit(&mut rng, faulty, OP_LIMIT);
            if let Step::Over =
                write_all_timed(side, &stream, resp.slice(cut..), limit, &what).await?
            {
                return give_up(side, &mut rng, stream);
            }
        } else {
            let limit = pick_limit(&mut rng, faulty, OP_LIMIT);
            if let Step::Over = write_all_timed(side, &stream, resp, limit, &what).await? {
                return give_up(side, &mut rng, stream);
            }
        }
        side.count(|f| {
            f.exchanges += 1;
            f.bytes += len as u64;
        });
        seq += 1;
    }
}

/// Starts serving an accepted connection, or counts why there is none.
fn on_accept(
    side: &Rc<Side>,
    res: io::Result<TcpStream>,
    index: &mut u64,
    conns: &mut Vec<JoinHandle<Result<(), String>>>,
) {
    match res {
        Ok(stream) => {
            side.count(|f| f.connections += 1);
            conns.push(runtime::spawn(serve_conn(side.clone(), stream, *index)));
            *index += 1;
        }
        Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {
            side.count(|f| f.accepts_aborted += 1)
        }
        Err(e) => side.fail(format!("accept: {e} ({:?})", e.kind())),
    }
}

/// Awaits the connection tasks that have finished.
async fn reap(side: &Side, conns: &mut Vec<JoinHandle<Result<(), String>>>) {
    let mut i = 0;
    while i < conns.len() {
        if conns[i].is_finished() {
            let handle = conns.swap_remove(i);
            side.record("server connection", handle.await);
        } else {
            i += 1;
        }
    }
}

/// The accept loop, until `stop`; then waits for the connections to end.
async fn serve(side: Rc<Side>, listener: TcpListener, stop: Arc<AtomicBool>) {
    let mut rng = Rng::new(mix(side.seed, SERVER_SALT));
    let mut conns = Vec::new();
    let mut index = 0u64;
    let mut round = 0u64;
    while !stop.load(Ordering::Acquire) {
        round += 1;
        if round % 16 == 0 {
            reap(&side, &mut conns).await;
        }
        match rng.below(40) {
            0..=9 => {
                // An accept given only a moment: mostly abandoned.
                let limit = Duration::from_micros(rng.below(300));
                match timeout(limit, listener.accept()).await {
                    Err(_) => side.count(|f| f.accepts_abandoned += 1),
                    Ok(res) => on_accept(&side, res.map(|(s, _)| s), &mut index, &mut conns),
                }
            }
            10 => {
                // A multishot stream, dropped after some connections or
                // when it has nothing for a moment. Rare: when it is armed
                // it takes the whole backlog at once, and the connections
                // it holds when dropped are closed unserved.
                let mut incoming = listener.incoming();
                for _ in 0..1 + rng.below(64) {
                    let limit = Duration::from_micros(rng.below(2_000));
                    match timeout(limit, incoming.next()).await {
                        Err(_) => break,
                        Ok(Some(res)) => on_accept(&side, res, &mut index, &mut conns),
                        Ok(None) => side.fail("incoming() ended".to_string()),
                    }
                }
                drop(incoming);
                side.count(|f| f.incoming_dropped += 1);
            }
            _ => {
                // An ordinary accept; the limit only lets the loop see
                // `stop` (and abandons an accept when idle).
                match timeout(Duration::from_millis(20), listener.accept()).await {
                    Err(_) => side.count(|f| f.accepts_abandoned += 1),
                    Ok(res) => on_accept(&side, res.map(|(s, _)| s), &mut index, &mut conns),
                }
            }
        }
    }
    drop(listener);
    let deadline = Instant::now() + DRAIN;
    let mut stuck = 0;
    for handle in conns {
        match timeout_at(deadline, handle).await {
            Ok(res) => side.record("server connection", res),
            Err(_) => stuck += 1,
        }
    }
    if stuck > 0 {
        side.fail(format!(
            "{stuck} connection tasks still running {DRAIN:?} after the clients were done"
        ));
    }
}

/// The server thread: binds, sends the address, serves until `stop`.
fn server_thread(
    seed: u64,
    pool: Arc<[u8]>,
    addr_tx: mpsc::Sender<SocketAddr>,
    stop: Arc<AtomicBool>,
) -> Report {
    let rt = Runtime::new().expect("cannot start the server runtime");
    let report = rt.block_on(async move {
        let side = Rc::new(Side::new("server", seed, pool));
        let before = runtime::metrics();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        addr_tx
            .send(listener.local_addr().expect("local_addr"))
            .expect("the test thread is gone");
        serve(side.clone(), listener, stop).await;
        let m = side.settle(before.tasks_alive).await;
        side.report(m)
    });
    let m = rt.metrics();
    assert_eq!(m.ops_in_flight, 0, "server: ops in flight after block_on");
    assert_eq!(m.tasks_alive, 0, "server: tasks alive after block_on");
    drop(rt);
    report
}

// ---------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------

/// One client connection: connect, exchanges, close; faults on the way.
async fn client_conn(side: &Side, addr: SocketAddr, id: u32) -> Result<(), String> {
    let mut rng = Rng::new(mix(side.seed, u64::from(id)));
    let faulty = rng.chance(400);
    let stream = match timed(pick_limit(&mut rng, faulty, 150), TcpStream::connect(addr)).await {
        None => {
            side.count(|f| f.connects_abandoned += 1);
            return Ok(());
        }
        Some(Ok(s)) => s,
        // The server may accept and reset (or drop an accepted connection
        // it abandoned) before this connect sees its completion.
        Some(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => {
            side.count(|f| f.peer_gone += 1);
            return Ok(());
        }
        Some(Err(e)) => return Err(format!("connect: {e} ({:?})", e.kind())),
    };
    side.count(|f| f.connections += 1);
    if rng.chance(500) {
        stream
            .set_nodelay(true)
            .map_err(|e| format!("set_nodelay: {e}"))?;
    }
    let exchanges = 1 + rng.below(MAX_EXCHANGES) as u32;
    for seq in 0..exchanges {
        let len = payload_len(&mut rng);
        let data = payload(&side.pool, side.seed, id, seq, len);
        let mut req = Vec::with_capacity(HEADER + len);
        req.extend_from_slice(&header(REQUEST, id, seq, len));
        req.extend_from_slice(data);
        let fault = if faulty { rng.below(1000) } else { 1000 };
        if fault < 20 {
            side.count(|f| f.resets += 1);
            return reset(stream);
        }
        let what = format!("writing request {seq}");
        if fault < 50 || rng.chance(150) {
            // In two parts, with a reset in between on a fault.
            let cut = 1 + rng.below(req.len() as u64 - 1) as usize;
            let limit = pick_limit(&mut rng, faulty, OP_LIMIT);
            let req = match write_all_timed(side, &stream, req.slice(..cut), limit, &what).await? {
                Step::Done(s) => s.into_inner(),
                Step::Over => return give_up(side, &mut rng, stream),
            };
            if fault < 50 {
                side.count(|f| f.resets += 1);
                return reset(stream);
            }
            let limit = pick_limit(&mut rng, faulty, OP_LIMIT);
            if let Step::Over =
                write_all_timed(side, &stream, req.slice(cut..), limit, &what).await?
            {
                return give_up(side, &mut rng, stream);
            }
        } else {
            let limit = pick_limit(&mut rng, faulty, OP_LIMIT);
            if let Step::Over = write_all_timed(side, &stream, req, limit, &what).await? {
                return give_up(side, &mut rng, stream);
            }
        }

        if fault < 80 {
            // Read part of the response, then reset while the server may
            // still be writing.
            let (res, _) = stream
                .read(Vec::with_capacity(1 + rng.below(4096) as usize))
                .await;
            match res {
                Ok(_) => {}
                Err(e) if peer_gone(&e) => {}
                Err(e) => return Err(format!("partial read of response {seq}: {e}")),
            }
            side.count(|f| f.resets += 1);
            return reset(stream);
        }
        let limit = pick_limit(&mut rng, faulty, OP_LIMIT);
        let what = format!("reading response header {seq}");
        let head = match read_exact_timed(side, &stream, HEADER, limit, &what).await? {
            Step::Done(h) => h,
            Step::Over => return give_up(side, &mut rng, stream),
        };
        let want_head = header(RESPONSE, id, seq, len);
        if head[..] != want_head[..] {
            return Err(format!(
                "response header of exchange {seq} is {head:02x?}, want {want_head:02x?}: \
                 stale or misrouted data"
            ));
        }
        let limit = pick_limit(&mut rng, faulty, OP_LIMIT);
        let what = format!("reading response {seq}");
        let got = match read_exact_timed(side, &stream, len, limit, &what).await? {
            Step::Done(g) => g,
            Step::Over => return give_up(side, &mut rng, stream),
        };
        let mut want = data.to_vec();
        want.reverse();
        if got != want {
            return Err(format!(
                "response of exchange {seq} ({len} bytes) is wrong: {}",
                difference(&got, &want)
            ));
        }
        side.count(|f| {
            f.exchanges += 1;
            f.bytes += len as u64;
        });
    }

    // The end: half-close and expect EOF (nothing more may arrive), drop,
    // or reset.
    match rng.below(10) {
        0..=5 => {
            match stream.shutdown(Shutdown::Write) {
                Ok(()) => {}
                // The server reset the connection already.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                    side.count(|f| f.peer_gone += 1);
                    return Ok(());
                }
                Err(e) => return Err(format!("shutdown: {e} ({:?})", e.kind())),
            }
            let (res, buf) = stream.read(Vec::with_capacity(64)).await;
            match res {
                Ok(0) => side.count(|f| f.clean_closes += 1),
                Ok(n) => {
                    return Err(format!(
                        "{n} unexpected bytes after the last exchange: {:02x?}",
                        buf
                    ))
                }
                Err(e) if peer_gone(&e) => side.count(|f| f.peer_gone += 1),
                Err(e) => return Err(format!("reading EOF: {e} ({:?})", e.kind())),
            }
        }
        6..=8 => side.count(|f| f.clean_closes += 1),
        _ => {
            side.count(|f| f.resets += 1);
            reset(stream)?;
        }
    }
    Ok(())
}

/// The client thread: `conns` workers each running connection after
/// connection until `run_for` has passed.
fn client_thread(cfg: Config, pool: Arc<[u8]>, addr: SocketAddr) -> Report {
    let rt = Runtime::new().expect("cannot start the client runtime");
    let report = rt.block_on(async move {
        let side = Rc::new(Side::new("client", cfg.seed, pool));
        let before = runtime::metrics();
        let end = Instant::now() + cfg.run_for;
        let next_id = Rc::new(Cell::new(0u32));
        let workers: Vec<_> = (0..cfg.conns)
            .map(|_| {
                let (side, next_id) = (side.clone(), next_id.clone());
                runtime::spawn(async move {
                    while Instant::now() < end {
                        let id = next_id.get();
                        next_id.set(id + 1);
                        if let Err(e) = client_conn(&side, addr, id).await {
                            side.fail(format!("connection {id}: {e}"));
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        let deadline = end + DRAIN;
        let mut stuck = 0;
        for worker in workers {
            match timeout_at(deadline, worker).await {
                Ok(res) => side.record("client worker", res),
                Err(_) => stuck += 1,
            }
        }
        if stuck > 0 {
            side.fail(format!(
                "{stuck} client workers still running {DRAIN:?} after the end of the run"
            ));
        }
        let m = side.settle(before.tasks_alive).await;
        side.report(m)
    });
    let m = rt.metrics();
    assert_eq!(m.ops_in_flight, 0, "client: ops in flight after block_on");
    assert_eq!(m.tasks_alive, 0, "client: tasks alive after block_on");
    drop(rt);
    report
}

// ---------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------

/// The number of descriptors this process has open.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// Runs the whole stress and returns the two reports and the descriptor
/// counts before and after.
fn run(cfg: Config) -> (Report, Report, usize, usize) {
    let fds_before = open_fds();
    let stop = Arc::new(AtomicBool::new(false));
    let (addr_tx, addr_rx) = mpsc::channel();
    let client_pool = make_pool(cfg.seed);
    let server = {
        let stop = stop.clone();
        let pool = client_pool.clone();
        std::thread::Builder::new()
            .name("stress-server".into())
            .spawn(move || server_thread(cfg.seed, pool, addr_tx, stop))
            .expect("spawn the server thread")
    };
    let Ok(addr) = addr_rx.recv() else {
        // The server thread died before listening: show why.
        match server.join() {
            Err(p) => std::panic::resume_unwind(p),
            Ok(_) => panic!("the server thread ended without an address"),
        }
    };
    let client = std::thread::Builder::new()
        .name("stress-client".into())
        .spawn(move || client_thread(cfg, client_pool, addr))
        .expect("spawn the client thread");
    let client = client.join();
    stop.store(true, Ordering::Release);
    let server = server.join();
    let client = client.unwrap_or_else(|p| std::panic::resume_unwind(p));
    let server = server.unwrap_or_else(|p| std::panic::resume_unwind(p));
    let fds_after = open_fds();
    (client, server, fds_before, fds_after)
}

/// The randomized stress (see the module documentation).
#[test]
fn randomized_tcp_stress() {
    let cfg = Config::from_env();
    println!(
        "stress: seed {} (STRESS_SEED={} to replay), {:?}, {} concurrent connections",
        cfg.seed, cfg.seed, cfg.run_for, cfg.conns
    );
    let (client, server, fds_before, fds_after) =
        with_deadline(cfg.run_for + MARGIN, move || run(cfg));
    let (c, s) = (client.figures, server.figures);
    println!(
        "stress summary: seed {seed}; {secs:?}; client: {cc} connections, {ce} exchanges verified \
         ({cb} payload bytes each way), abandoned connects {cac} / writes {cw} / reads {cr}, \
         resets sent {crs}, peer gone {cpg}, clean closes {ccl}; server: {sc} connections \
         accepted, {se} responses, abandoned accepts {sa} / reads {sr} / writes {sw}, \
         incoming streams dropped {si}, accepts aborted {sab}, resets sent {srs}, peer gone \
         {spg}, clean ends {scl}; ops submitted client {cos} / server {sos}; descriptors \
         {fds_before} -> {fds_after}",
        seed = cfg.seed,
        secs = cfg.run_for,
        cc = c.connections,
        ce = c.exchanges,
        cb = c.bytes,
        cac = c.connects_abandoned,
        cw = c.writes_abandoned,
        cr = c.reads_abandoned,
        crs = c.resets,
        cpg = c.peer_gone,
        ccl = c.clean_closes,
        sc = s.connections,
        se = s.exchanges,
        sa = s.accepts_abandoned,
        sr = s.reads_abandoned,
        sw = s.writes_abandoned,
        si = s.incoming_dropped,
        sab = s.accepts_aborted,
        srs = s.resets,
        spg = s.peer_gone,
        scl = s.clean_closes,
        cos = client.metrics.ops_submitted,
        sos = server.metrics.ops_submitted,
    );
    let failures = client.failures + server.failures;
    if failures > 0 {
        let shown: Vec<String> = client.errors.into_iter().chain(server.errors).collect();
        panic!(
            "stress (seed {}): {failures} failures; the first ones:\n  {}",
            cfg.seed,
            shown.join("\n  ")
        );
    }
    assert_eq!(
        fds_after, fds_before,
        "stress (seed {}): descriptors leaked: {fds_before} open before, {fds_after} after",
        cfg.seed
    );
    assert!(
        c.exchanges > 0 && s.exchanges >= c.exchanges,
        "stress (seed {}): {} exchanges verified by the client, {} answered by the server",
        cfg.seed,
        c.exchanges,
        s.exchanges
    );
}
