//! The echo server on our runtime: `net::TcpListener` with multishot
//! `incoming`, one task per connection, owned-buffer `read` / `write_all`.
//! The same code as `examples/echo.rs`, plus `TCP_NODELAY`.

use std::io;
use std::net::SocketAddr;

use net::{TcpListener, TcpStream};
use runtime::io::{OwnedRead, OwnedWrite};

use super::{Opts, BUF_SIZE};

/// Serves echo on `addr` until killed, on a runtime built with `opts`
/// (SQPOLL or not).
pub(crate) fn run(addr: SocketAddr, opts: Opts) -> io::Result<()> {
    let rt = opts.runtime()?;
    rt.block_on(async move {
        // `bind` sets SO_REUSEADDR and a backlog of 4096.
        let listener = TcpListener::bind(addr)?;
        let mut incoming = listener.incoming();
        while let Some(conn) = incoming.next().await {
            match conn {
                Ok(stream) => {
                    runtime::spawn(serve(stream));
                }
                // Out of descriptors, say: `incoming` backs off by itself.
                Err(e) => eprintln!("echo_server ours: accept failed: {e}"),
            }
        }
        Ok(())
    })
}

/// Echoes one connection until the peer closes it or an error.
async fn serve(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    echo(&stream).await;
}

/// The echo loop on any of our streams (also `DirectStream`): read into a
/// `BUF_SIZE` buffer, write it all back, until EOF or an error.
pub(super) async fn echo<S: OwnedRead + OwnedWrite>(stream: &S) {
    let mut buf = Vec::with_capacity(BUF_SIZE);
    loop {
        let (res, b) = stream.read(buf).await;
        match res {
            Ok(n) if n > 0 => {}
            _ => return,
        }
        let (res, mut b) = stream.write_all(b).await;
        if res.is_err() {
            return;
        }
        b.clear();
        buf = b;
    }
}
