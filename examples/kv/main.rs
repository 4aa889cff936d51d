//! `kv`: an in-memory key-value server speaking RESP2, the Redis protocol.
//!
//! ```text
//! cargo run --release -p examples --example kv -- 127.0.0.1:6379
//! redis-cli -p 6379 set greeting hello
//! redis-benchmark -p 6379 -t ping,set,get -P 16 -q
//! ```
//!
//! One task per connection, all sharing one store. Each connection reads into one reusable buffer, parses commands in
//! place (arguments are slices of that buffer), and answers everything one
//! read brought in with one `write_all`, so a pipelined batch costs one read
//! and one write. The protocol and the commands live in the modules `resp`
//! and `store`, which the tokio peer (`bench/src/bin/tokio_kv.rs`) shares.
//!
//! On SIGINT or SIGTERM the server stops accepting, and each connection
//! answers the commands it has received (completing one half-received),
//! then closes. A connection waiting for its next command gets
//! `IDLE_GRACE` for one already on its way, then closes. The server exits 0
//! when every connection is closed, or after `--shutdown-timeout SECS`
//! (default 5).
//!
//! # Several workers
//!
//! `--threads N` serves on N workers (threads with a ring each), each with
//! its own listener on the same port (`SO_REUSEPORT`) and its own graceful
//! shutdown (see `examples::shutdown::run_server`), and one store for all:
//! a `SET` through any connection is seen by a `GET` through any other.
//!
//! How the store is shared: with one worker (the default) it is an
//! `Rc<RefCell<Store>>`, as before, and costs no atomic operation. With
//! several it is one `Arc<Mutex<Store>>`, locked once per batch of
//! commands, that is for everything one read brought in (a whole
//! `redis-benchmark -P 16` pipeline), and never across an `await`: the
//! lock is held for the microseconds of parsing and running the batch,
//! not for any I/O. The connection loop is generic over the two
//! ([`SharedStore`]), so the one-worker path is the same machine code as
//! before; measured against the build before `--threads` existed (server
//! pinned to core 0, `redis-benchmark -t set,get -c 50` on core 1, server
//! CPU per command, 5 alternating rounds, other builds running): medians
//! 0.63 against 0.61 µs with `-P 16` and 7.90 against 7.85 µs with `-P 1`,
//! inside the rounds' spread (0.56–0.71 and 6.98–8.55 µs). Why not shard the map by key, a lock per shard: a batch would
//! then take one lock per command instead of one per batch, and on 2 cores
//! (the development machine) two workers rarely meet on one lock, so one
//! lock is the cheaper choice; every command is atomic under it (also
//! `DEL`/`EXISTS` over several keys). On many cores the single lock
//! becomes the limit, and sharding is the way on.

#[cfg(test)]
mod fuzz_tests;
mod resp;
mod store;

use std::cell::RefCell;
use std::io;
use std::net::Shutdown as Direction;
use std::pin::pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use examples::shutdown::{
    or_stopped, run_server, stop_listening, ServerArgs, Shutdown, IDLE_GRACE,
};
use net::{TcpListener, TcpStream};

use resp::CommandParser;
use store::{serve, Store};

/// The read buffer's starting size; it doubles while a command is larger.
const READ_BUF: usize = 16 * 1024;

/// A connection whose buffers grew past this gives the memory back once
/// they are empty again.
const SHRINK_ABOVE: usize = 1024 * 1024;

/// The most a single unfinished command may buffer (a full-size bulk
/// string and then some) before the connection is refused.
const MAX_QUERY_BUF: usize = resp::MAX_BULK_LEN + 1024 * 1024;

/// How long a connection closed for a protocol error (or `QUIT`) still
/// reads and discards input, so its last reply is not lost to a TCP reset.
const LINGER: Duration = Duration::from_secs(2);

/// The most input such a closing connection reads and discards.
const LINGER_BYTES: usize = 1024 * 1024;

/// Listens on the address given as the first argument (default
/// `127.0.0.1:6379`) and serves each client on its own task, until SIGINT
/// or SIGTERM.
fn main() -> io::Result<()> {
    let args = ServerArgs::parse("kv", "127.0.0.1:6379");
    let announce = |addr| format!("kv: listening on {addr}");
    if args.threads == 1 {
        // One runtime: a store no other thread can see.
        run_server("kv", &args, announce, |listener, shutdown| async move {
            let store = Rc::new(RefCell::new(Store::new()));
            accept_loop(listener, shutdown, store).await;
        })
    } else {
        let store = Arc::new(Mutex::new(Store::new()));
        run_server("kv", &args, announce, move |listener, shutdown| {
            accept_loop(listener, shutdown, Arc::clone(&store))
        })
    }
}

/// The store as the connections of one worker share it: an
/// `Rc<RefCell<Store>>` with one worker, an `Arc<Mutex<Store>>` with
/// several (see the module documentation).
trait SharedStore: Clone + 'static {
    /// Runs `f` with the store to itself.
    fn with<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R;
}

impl SharedStore for Rc<RefCell<Store>> {
    fn with<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        f(&mut self.borrow_mut())
    }
}

impl SharedStore for Arc<Mutex<Store>> {
    fn with<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        // A panic while the lock was held (a bug) left the store as the
        // command before it did; keep serving.
        let mut store = self.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut store)
    }
}

/// Accepts connections until the shutdown starts, serving each on its own
/// task with `store`.
async fn accept_loop(listener: TcpListener, shutdown: Shutdown, store: impl SharedStore) {
    let mut stop = pin!(shutdown.started());
    loop {
        let accept = pin!(listener.accept());
        let Some(accepted) = or_stopped(accept, stop.as_mut()).await else {
            stop_listening(&listener);
            break;
        };
        match accepted {
            Ok((stream, _)) => {
                let store = store.clone();
                let shutdown = shutdown.clone();
                runtime::spawn(async move {
                    if let Err(e) = connection(stream, &store, &shutdown).await {
                        // Peers vanishing is routine; anything else is worth a line.
                        if !matches!(
                            e.kind(),
                            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                        ) {
                            eprintln!("kv: connection error: {e}");
                        }
                    }
                });
            }
            // EINVAL: the listener was shut down (by another worker of a
            // pool that heard the signal first): stop as on the signal.
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                stop_listening(&listener);
                break;
            }
            Err(e) => {
                // Out of descriptors (EMFILE) and the like: say so, wait a
                // moment for some to be freed, and go on serving.
                eprintln!("kv: accept failed: {e}");
                runtime::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    drop(listener);
}

/// Serves one client until it closes, quits, or breaks the protocol.
async fn connection(
    stream: TcpStream,
    store: &impl SharedStore,
    shutdown: &Shutdown,
) -> io::Result<()> {
    let _open = shutdown.track();
    let mut stop = pin!(shutdown.started());
    stream.set_nodelay(true)?;
    let mut parser = CommandParser::new();
    let mut input: Vec<u8> = Vec::with_capacity(READ_BUF);
    let mut out: Vec<u8> = Vec::with_capacity(READ_BUF);
    loop {
        if input.len() == input.capacity() {
            // A command larger than the buffer: make room for more of it.
            if input.len() >= MAX_QUERY_BUF {
                let mut reply = Vec::new();
                resp::write_error(
                    &mut reply,
                    b"ERR Protocol error: query buffer limit exceeded",
                );
                drop(input);
                let (res, _) = stream.write_all(reply).await;
                res?;
                // Like any protocol error: make sure the reply is read, not
                // lost to a reset for the unread rest of the command.
                return linger(&stream).await;
            }
            input.reserve(input.capacity());
        }
        let between_commands = input.is_empty();
        let mut read = pin!(stream.read(input));
        let (res, buf) = if between_commands {
            match or_stopped(read.as_mut(), stop.as_mut()).await {
                Some(done) => done,
                // Shutting down with no command begun: answer one already
                // on its way, if it comes soon, or close.
                None => match runtime::time::timeout(IDLE_GRACE, read).await {
                    Ok(done) => done,
                    Err(_) => return Ok(()),
                },
            }
        } else {
            // In the middle of a command: finish it (the shutdown's
            // timeout bounds this).
            read.await
        };
        input = buf;
        if res? == 0 {
            return Ok(());
        }

        // Run every complete command, sending each batch of replies with
        // one write; usually that is everything this read brought.
        let mut start = 0;
        loop {
            let progress = store.with(|store| serve(store, &mut parser, &input[start..], &mut out));
            start += progress.consumed;
            if !out.is_empty() {
                let (res, buf) = stream.write_all(out).await;
                out = buf;
                out.clear();
                res?;
            }
            if progress.close {
                return linger(&stream).await;
            }
            if !progress.more {
                break;
            }
        }

        // Shutting down: what was received is answered; close unless a
        // command is half-received.
        if shutdown.is_started() && start == input.len() {
            return linger(&stream).await;
        }

        // Keep the unfinished command at the front for the next read. It is
        // moved only when a command before it completed, so a command that
        // trickles in is moved at most once, not once per read.
        if start > 0 {
            input.copy_within(start.., 0);
            input.truncate(input.len() - start);
        }
        if input.is_empty() && input.capacity() > SHRINK_ABOVE {
            input = Vec::with_capacity(READ_BUF);
        }
        if out.capacity() > SHRINK_ABOVE {
            out = Vec::with_capacity(READ_BUF);
        }
    }
}

/// Closes our side after the last reply, then reads and discards what the
/// client still sends (bounded in time and bytes), so the kernel does not
/// answer unread data with a reset that could destroy that reply in flight.
async fn linger(stream: &TcpStream) -> io::Result<()> {
    stream.shutdown(Direction::Write)?;
    let drain = async {
        let mut buf = Vec::with_capacity(READ_BUF);
        let mut total = 0;
        while total < LINGER_BYTES {
            buf.clear();
            let (res, b) = stream.read(buf).await;
            buf = b;
            match res {
                Ok(n) if n > 0 => total += n,
                _ => break,
            }
        }
    };
    let _ = runtime::time::timeout(LINGER, drain).await;
    Ok(())
}
