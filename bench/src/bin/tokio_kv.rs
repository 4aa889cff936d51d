//! `tokio_kv`: the `kv` example server on tokio, the peer it is measured
//! against.
//!
//! ```text
//! cargo run --release -p bench --bin tokio_kv -- 127.0.0.1:6380
//! redis-benchmark -p 6380 -t ping,set,get -P 16 -q
//! ```
//!
//! It shares the RESP parser and the store with the example (the same
//! source files, included by path), and mirrors its connection loop line for
//! line: a current-thread runtime (one core, like ours), one local task per
//! connection, one reused read buffer parsed in place, and one `write_all`
//! per batch of replies. Only the I/O differs: tokio's readiness-based
//! sockets instead of io_uring submissions.

#[path = "../../../examples/kv/resp.rs"]
mod resp;
#[path = "../../../examples/kv/store.rs"]
mod store;

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use resp::CommandParser;
use store::{serve, Store};

/// The read buffer's starting size; it doubles while a command is larger.
const READ_BUF: usize = 16 * 1024;

/// A connection whose buffers grew past this gives the memory back once
/// they are empty again.
const SHRINK_ABOVE: usize = 1024 * 1024;

/// The most a single unfinished command may buffer before the connection is
/// refused.
const MAX_QUERY_BUF: usize = resp::MAX_BULK_LEN + 1024 * 1024;

/// How long a connection closed for a protocol error (or `QUIT`) still
/// reads and discards input, so its last reply is not lost to a TCP reset.
const LINGER: Duration = Duration::from_secs(2);

/// The most input such a closing connection reads and discards.
const LINGER_BYTES: usize = 1024 * 1024;

/// Listens on the address given as the first argument (default
/// `127.0.0.1:6380`) and serves each client on its own local task.
fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:6380".to_string());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = TcpListener::bind(addr.as_str()).await?;
        println!("tokio_kv: listening on {}", listener.local_addr()?);
        let store = Rc::new(RefCell::new(Store::new()));
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let store = Rc::clone(&store);
                    tokio::task::spawn_local(async move {
                        if let Err(e) = connection(stream, &store).await {
                            if !matches!(
                                e.kind(),
                                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                            ) {
                                eprintln!("tokio_kv: connection error: {e}");
                            }
                        }
                    });
                }
                Err(e) => {
                    eprintln!("tokio_kv: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    })
}

/// Serves one client until it closes, quits, or breaks the protocol.
async fn connection(mut stream: TcpStream, store: &RefCell<Store>) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut parser = CommandParser::new();
    let mut input: Vec<u8> = Vec::with_capacity(READ_BUF);
    let mut out: Vec<u8> = Vec::with_capacity(READ_BUF);
    loop {
        if input.len() == input.capacity() {
            if input.len() >= MAX_QUERY_BUF {
                let mut reply = Vec::new();
                resp::write_error(
                    &mut reply,
                    b"ERR Protocol error: query buffer limit exceeded",
                );
                return stream.write_all(&reply).await;
            }
            input.reserve(input.capacity());
        }
        // Reads into the spare capacity, like a read on our runtime.
        if stream.read_buf(&mut input).await? == 0 {
            return Ok(());
        }

        let mut start = 0;
        loop {
            let progress = serve(
                &mut store.borrow_mut(),
                &mut parser,
                &input[start..],
                &mut out,
            );
            start += progress.consumed;
            if !out.is_empty() {
                stream.write_all(&out).await?;
                out.clear();
            }
            if progress.close {
                return linger(&mut stream).await;
            }
            if !progress.more {
                break;
            }
        }

        input.copy_within(start.., 0);
        input.truncate(input.len() - start);
        if input.is_empty() && input.capacity() > SHRINK_ABOVE {
            input = Vec::with_capacity(READ_BUF);
        }
        if out.capacity() > SHRINK_ABOVE {
            out = Vec::with_capacity(READ_BUF);
        }
    }
}

/// Closes our side after the last reply, then reads and discards what the
/// client still sends (bounded in time and bytes).
async fn linger(stream: &mut TcpStream) -> io::Result<()> {
    stream.shutdown().await?;
    let drain = async {
        let mut buf = vec![0u8; READ_BUF];
        let mut total = 0;
        while total < LINGER_BYTES {
            match stream.read(&mut buf).await {
                Ok(n) if n > 0 => total += n,
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
    Ok(())
}
