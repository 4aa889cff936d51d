//! An HTTP/1.1 server: `GET /` answers `Hello, World!`.
//!
//! Keep-alive and pipelining work: every read is parsed for as many complete
//! requests as it holds (a request split across reads waits for the rest),
//! and their responses go out in order with one write. Unknown paths get
//! 404, malformed requests 400 and a close, chunked request bodies 501 and a
//! close, heads over 8 KiB 431 and a close. See `parser.rs` for the exact
//! syntax accepted and `conn.rs` for the answers.
//!
//! Built for throughput: one task per connection, accepted by multishot
//! accept; each connection owns one input and one output buffer for its
//! whole life, so a request costs no allocation.
//!
//! On SIGINT or SIGTERM the server stops accepting and lets each
//! connection finish the request it is in: its response says
//! `Connection: close` and the connection closes after it. A connection
//! waiting for its next request gets [`IDLE_GRACE`] for one already on its
//! way, then closes. The server exits 0 when every connection is closed,
//! or after `--shutdown-timeout SECS` (default 5).
//!
//! `--threads N` serves on N workers (threads with a ring each), each with
//! its own listener on the same port (`SO_REUSEPORT`, the kernel spreading
//! connections), its own connections and its own graceful shutdown: see
//! `examples::shutdown::run_server`. Nothing is shared between them.
//!
//! ```text
//! cargo run --release -p examples --example http -- 127.0.0.1:8080 [--threads 2]
//! curl -i http://127.0.0.1:8080/
//! wrk -t1 -c256 -d10s http://127.0.0.1:8080/
//! ```

mod conn;
#[cfg(test)]
mod fuzz_tests;
mod parser;

use std::io;
use std::net::Shutdown as Direction;
use std::pin::pin;
use std::time::Duration;

use examples::shutdown::{
    or_stopped, run_server, stop_listening, ServerArgs, Shutdown, IDLE_GRACE,
};
use net::{TcpListener, TcpStream};

use conn::{Conn, Next};

/// Binds the address from the first argument (default `127.0.0.1:8080`) and
/// serves until SIGINT or SIGTERM.
fn main() -> io::Result<()> {
    let args = ServerArgs::parse("http", "127.0.0.1:8080");
    run_server(
        "http",
        &args,
        |addr| format!("http: listening on http://{addr}"),
        |listener, shutdown| async move { accept_loop(listener, &shutdown).await },
    )
}

/// Accepts connections until the shutdown starts; then the listener is
/// closed.
async fn accept_loop(listener: TcpListener, shutdown: &Shutdown) {
    let mut incoming = listener.incoming();
    let mut stop = pin!(shutdown.started());
    loop {
        let next = pin!(incoming.next());
        match or_stopped(next, stop.as_mut()).await {
            Some(Some(Ok(stream))) => {
                runtime::spawn(serve(stream, shutdown.clone()));
            }
            // EINVAL: the listener was shut down (by another worker of a
            // pool that heard the signal first): stop as on the signal.
            Some(Some(Err(e))) if e.kind() == std::io::ErrorKind::InvalidInput => {
                stop_listening(&listener);
                return;
            }
            // Out of descriptors, say: the listener backs off by itself and
            // keeps accepting once descriptors free up.
            Some(Some(Err(e))) => eprintln!("http: accept failed: {e}"),
            Some(None) | None => {
                stop_listening(&listener);
                return;
            }
        }
    }
}

/// Serves one connection until the client closes it, an answer closes it,
/// or the shutdown closes it between two requests.
async fn serve(stream: TcpStream, shutdown: Shutdown) {
    let _open = shutdown.track();
    let mut stop = pin!(shutdown.started());
    let _ = stream.set_nodelay(true);
    let mut conn = Conn::new();
    let mut input = Vec::with_capacity(conn::READ_CAPACITY);
    let mut out = Vec::with_capacity(conn::WRITE_CAPACITY);
    loop {
        // The read appends to `input`'s spare capacity, which `process`
        // keeps at least READ_CAPACITY - MAX_HEAD bytes large.
        let between_requests = input.is_empty();
        let mut read = pin!(stream.read(input));
        let (res, buf) = if between_requests {
            match or_stopped(read.as_mut(), stop.as_mut()).await {
                Some(done) => done,
                // Shutting down with no request begun: answer one already
                // on its way, if it comes soon, or close.
                None => match runtime::time::timeout(IDLE_GRACE, read).await {
                    Ok(done) => done,
                    Err(_) => return,
                },
            }
        } else {
            // In the middle of a request: finish it (the shutdown's
            // timeout bounds this).
            read.await
        };
        input = buf;
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        conn.closing = shutdown.is_started();
        let next = conn.process(&mut input, &mut out);
        if !out.is_empty() {
            let (res, buf) = stream.write_all(out).await;
            out = buf;
            out.clear();
            if res.is_err() {
                return;
            }
        }
        if next == Next::Close {
            linger_close(&stream, input).await;
            return;
        }
    }
}

/// Closes gracefully: sends FIN, then discards what the client still sends
/// (for at most a second or 64 KiB), so that closing with unread bytes does
/// not reset the connection and destroy the response before it is read.
async fn linger_close(stream: &TcpStream, mut buf: Vec<u8>) {
    if stream.shutdown(Direction::Write).is_err() {
        return;
    }
    let drain = async {
        let mut total = 0;
        while total < 64 * 1024 {
            buf.clear();
            let (res, b) = stream.read(buf).await;
            buf = b;
            match res {
                Ok(0) | Err(_) => return,
                Ok(n) => total += n,
            }
        }
    };
    let _ = runtime::time::timeout(Duration::from_secs(1), drain).await;
}
