//! The echo server on glommio.
//!
//! One thread: a `LocalExecutor` made on the calling thread with
//! `Placement::Unbound`, so glommio pins nothing itself and the taskset the
//! runner applies holds; every other setting is glommio's default (glommio
//! needs a memlock limit of at least 512 KiB, which it checks at start). The
//! listener is made with socket2 (SO_REUSEADDR, backlog 4096; glommio's own
//! `bind` sets SO_REUSEPORT and a backlog of 1024, neither changeable) and
//! handed over with `TcpListener::from_raw_fd`. I/O is glommio's stream API,
//! `futures_lite`'s `AsyncReadExt::read` and `AsyncWriteExt::write_all` on its
//! `TcpStream`, the path its docs show: each connection owns one 16 KiB
//! buffer. TCP_NODELAY is set on every accepted socket.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorBuilder, Placement};

/// Serves echo on `addr` until killed.
pub(crate) fn run(addr: SocketAddr) -> io::Result<()> {
    let fd = bench::listen(addr)?.into_raw_fd();
    let ex = LocalExecutorBuilder::new(Placement::Unbound).make()?;
    ex.run(async move {
        // SAFETY: `fd` is the listening socket just made above; ownership
        // passes to the glommio listener, which is its only owner.
        let listener = unsafe { TcpListener::from_raw_fd(fd) };
        loop {
            match listener.accept().await {
                Ok(stream) => {
                    glommio::spawn_local(echo(stream)).detach();
                }
                Err(e) => {
                    // Out of descriptors, say: back off instead of spinning.
                    eprintln!("echo_server glommio: accept failed: {e}");
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    })
}

/// Echoes one connection until the peer closes it or an error occurs.
async fn echo(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; super::BUF_SIZE];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
