//! The echo server on tokio-uring.
//!
//! One thread: a tokio-uring runtime with its default settings, which is what
//! `tokio_uring::start` builds (256 submission entries); it is built through
//! `Runtime::new` so that a missing io_uring is an error, not a panic. The
//! listener is made with socket2 (SO_REUSEADDR, backlog 4096; tokio-uring's
//! own `bind` listens with a backlog of 1024 and no way to change it) and
//! handed over with `TcpListener::from_std`. I/O is tokio-uring's owned-buffer
//! API, the path of its own TCP examples: each connection owns one 16 KiB
//! `Vec`, `read` fills it, `write_all` gives it back. TCP_NODELAY is set on
//! every accepted socket.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio_uring::net::{TcpListener, TcpStream};

/// Serves echo on `addr` until killed.
pub(crate) fn run(addr: SocketAddr) -> io::Result<()> {
    let listener = bench::listen(addr)?;
    let rt = tokio_uring::Runtime::new(&tokio_uring::builder())?;
    rt.block_on(async move {
        let listener = TcpListener::from_std(listener);
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio_uring::spawn(echo(stream));
                }
                Err(e) => {
                    // Out of descriptors, say: back off instead of spinning.
                    eprintln!("echo_server tokio_uring: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    })
}

/// Echoes one connection until the peer closes it or an error occurs.
async fn echo(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(super::BUF_SIZE);
    loop {
        // A `Vec` is read into from its start, over its whole capacity; the
        // read raises its length to the bytes received (it was cleared).
        let (res, b) = stream.read(buf).await;
        buf = b;
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        // `write_all` writes the vector's initialized bytes: what was read.
        let (res, b) = stream.write_all(buf).await;
        buf = b;
        if res.is_err() {
            return;
        }
        buf.clear();
    }
}
