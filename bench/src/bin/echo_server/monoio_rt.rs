//! The echo server on monoio, with its io_uring driver.
//!
//! One thread: `RuntimeBuilder::<IoUringDriver>` (no legacy epoll fallback:
//! if io_uring is unavailable the server fails to start rather than quietly
//! measuring epoll). The timer is enabled only for the back-off after a failed
//! accept. The listener is monoio's own, bound with `ListenerOpts`: backlog
//! 4096, SO_REUSEADDR, and SO_REUSEPORT turned off (monoio's default turns it
//! on, which would let a stale server share the port unnoticed). I/O is
//! monoio's rent API, the path its docs and examples use: each connection
//! owns one 16 KiB `Vec`, `read` fills it, `write_all` gives it back.
//! TCP_NODELAY is set on every accepted socket.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{ListenerOpts, TcpListener, TcpStream};

/// Serves echo on `addr` until killed.
pub(crate) fn run(addr: SocketAddr) -> io::Result<()> {
    let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()?;
    rt.block_on(async move {
        let opts = ListenerOpts::new()
            .backlog(4096)
            .reuse_addr(true)
            .reuse_port(false);
        let listener = TcpListener::bind_with_config(addr, &opts)?;
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    monoio::spawn(echo(stream));
                }
                Err(e) => {
                    // Out of descriptors, say: back off instead of spinning.
                    eprintln!("echo_server monoio: accept failed: {e}");
                    monoio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    })
}

/// Echoes one connection until the peer closes it or an error occurs.
async fn echo(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(super::BUF_SIZE);
    loop {
        // A `Vec` is read into from its start, over its whole capacity; the
        // read sets its length to the bytes received.
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
