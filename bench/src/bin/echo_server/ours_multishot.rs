//! Our runtime with multishot receive into a provided buffer ring (issue 7):
//! each connection arms one `recv_multishot` and writes every received
//! chunk back as it is (the chunk is an `IoBuf`, no copy); an idle
//! connection holds no buffer. One ring of 1,024 × 16 KiB buffers per
//! runtime, shared by all connections. `--no-bundles` turns receive
//! bundles off (`RecvMulti::bundles(false)`), for the `uring` scenario.

use std::io;
use std::net::SocketAddr;

use net::{TcpListener, TcpStream};
use runtime::bufring::BufRing;

use super::{Opts, BUF_SIZE};

/// Serves echo on `addr` until killed, on a runtime built with `opts`;
/// receive bundles unless `opts.no_bundles`.
pub(crate) fn run(addr: SocketAddr, opts: Opts) -> io::Result<()> {
    let rt = opts.runtime()?;
    let bundles = !opts.no_bundles;
    rt.block_on(async move {
        let ring = BufRing::builder()
            .entries(1024)
            .buf_size(BUF_SIZE)
            .build()?;
        let listener = TcpListener::bind(addr)?;
        let mut incoming = listener.incoming();
        while let Some(conn) = incoming.next().await {
            match conn {
                Ok(stream) => {
                    runtime::spawn(serve(stream, ring.clone(), bundles));
                }
                Err(e) => eprintln!("echo_server ours_multishot: accept failed: {e}"),
            }
        }
        Ok(())
    })
}

/// Echoes one connection until the peer closes it.
async fn serve(stream: TcpStream, ring: BufRing, bundles: bool) {
    let _ = stream.set_nodelay(true);
    let mut chunks = stream.recv_multishot(&ring).bundles(bundles);
    while let Some(Ok(chunk)) = chunks.next().await {
        let (res, _chunk) = stream.write_all(chunk).await;
        if res.is_err() {
            return;
        }
    }
}
