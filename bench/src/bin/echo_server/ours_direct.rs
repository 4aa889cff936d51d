//! Our runtime with registered files (issue 7): connections are accepted
//! straight into the runtime's fixed file table
//! (`net::TcpListener::incoming_direct`), so every read and write on them
//! uses the registered descriptor (`IOSQE_FIXED_FILE`) instead of looking
//! the file up on each operation. Otherwise the same as `ours`: one task
//! per connection, a 16 KiB buffer, `read` / `write_all`.
//!
//! A direct descriptor has no `setsockopt`; `TCP_NODELAY` is set on the
//! listening socket instead, and Linux copies it to every accepted
//! connection.

use std::io;
use std::net::SocketAddr;

use net::{DirectStream, TcpListener};

use super::Opts;

/// Serves echo on `addr` until killed, on a runtime built with `opts`.
pub(crate) fn run(addr: SocketAddr, opts: Opts) -> io::Result<()> {
    let rt = opts.runtime()?;
    rt.block_on(async move {
        // SO_REUSEADDR, backlog 4096, and TCP_NODELAY inherited by the
        // accepted connections.
        let std_listener = bench::listen(addr)?;
        socket2::SockRef::from(&std_listener).set_tcp_nodelay(true)?;
        let listener = TcpListener::from_std(std_listener);
        let mut incoming = listener.incoming_direct();
        while let Some(conn) = incoming.next().await {
            match conn {
                Ok(stream) => {
                    runtime::spawn(serve(stream));
                }
                // The fixed file table full, say: go on with the others.
                Err(e) => eprintln!("echo_server ours_direct: accept failed: {e}"),
            }
        }
        Ok(())
    })
}

/// Echoes one connection until the peer closes it or an error.
async fn serve(stream: DirectStream) {
    super::ours::echo(&stream).await;
}
