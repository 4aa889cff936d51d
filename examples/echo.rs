//! A TCP echo server: every connection gets its bytes back.
//!
//! `cargo run --release -p examples --example echo -- 127.0.0.1:7000`
//! (the address is optional; that one is the default).
//!
//! On SIGINT or SIGTERM it stops accepting; each connection sends back
//! what it has read, and closes; the server exits 0 when every connection
//! is closed, or after `--shutdown-timeout SECS` (default 5).
//!
//! `--threads N` serves on N workers (threads with a ring each), each with
//! its own listener on the same port (`SO_REUSEPORT`): see
//! `examples::shutdown::run_server`.

use std::net::Shutdown as Direction;
use std::pin::pin;

use examples::shutdown::{or_stopped, run_server, stop_listening, ServerArgs, Shutdown};
use net::{TcpListener, TcpStream};

fn main() -> std::io::Result<()> {
    let args = ServerArgs::parse("echo", "127.0.0.1:7000");
    run_server(
        "echo",
        &args,
        |addr| format!("echo: listening on {addr}"),
        |listener, shutdown| async move { serve(listener, &shutdown).await },
    )
}

/// Accepts connections until the shutdown starts.
async fn serve(listener: TcpListener, shutdown: &Shutdown) {
    let mut incoming = listener.incoming();
    let mut stop = pin!(shutdown.started());
    loop {
        let next = pin!(incoming.next());
        let conn = match or_stopped(next, stop.as_mut()).await {
            Some(Some(conn)) => conn,
            Some(None) | None => {
                stop_listening(&listener);
                return;
            }
        };
        let stream = match conn {
            Ok(stream) => stream,
            // EINVAL: the listener was shut down (by another worker of a
            // pool that heard the signal first): stop as on the signal.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                stop_listening(&listener);
                return;
            }
            Err(e) => {
                // Out of descriptors and the like: the listener backs off
                // and keeps going.
                eprintln!("echo: accept failed: {e}");
                continue;
            }
        };
        runtime::spawn(echo(stream, shutdown.clone()));
    }
}

/// Echoes one connection until the client closes it or the shutdown
/// starts; in the latter case what was read is still sent back.
async fn echo(stream: TcpStream, shutdown: Shutdown) {
    let _open = shutdown.track();
    let mut stop = pin!(shutdown.started());
    let mut buf = Vec::with_capacity(16 * 1024);
    loop {
        let read = pin!(stream.read(buf));
        let Some((res, b)) = or_stopped(read, stop.as_mut()).await else {
            break;
        };
        match res {
            Ok(n) if n > 0 => {}
            _ => return,
        }
        let (res, b) = stream.write_all(b).await;
        if res.is_err() || shutdown.is_started() {
            break;
        }
        buf = b;
        buf.clear();
    }
    // The client sees the end of the stream after the last echo.
    let _ = stream.shutdown(Direction::Write);
}
