//! The `http` example's server on monoio, for benchmarking against it.
//!
//! Same protocol code (it includes `examples/http/parser.rs` and
//! `examples/http/conn.rs`, so both servers parse and answer byte for byte
//! alike), same buffer sizes, one task per connection, one write per batch of
//! pipelined responses, the same graceful close; only the runtime differs.
//! Like ours it runs on one thread: monoio's runtime with its io_uring driver
//! (no epoll fallback) and its timer, which the graceful close needs. The
//! listener is monoio's own: backlog 4096, SO_REUSEADDR, SO_REUSEPORT off.
//! I/O is monoio's rent API, the path its docs use; each read appends to the
//! input buffer's spare capacity through a `SliceMut`.
//!
//! ```text
//! cargo run --release -p bench --bin monoio_http -- 127.0.0.1:8082
//! wrk -t1 -c256 -d10s http://127.0.0.1:8082/
//! ```

#[path = "../../../examples/http/conn.rs"]
mod conn;
#[path = "../../../examples/http/parser.rs"]
mod parser;

use std::io;
use std::time::Duration;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::{ListenerOpts, TcpListener, TcpStream};

use conn::{Conn, Next};

/// Binds the address from the first argument (default `127.0.0.1:8080`) and
/// serves until killed.
fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".to_string());
    if let Err(e) = serve_forever(&addr) {
        eprintln!("monoio_http: {addr}: {e}");
        std::process::exit(1);
    }
}

/// Raises the descriptor limit, builds the runtime and accepts connections
/// until killed; returns only on a setup error.
fn serve_forever(addr: &str) -> io::Result<()> {
    bench::raise_nofile_limit()?;
    let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()?;
    rt.block_on(async {
        let opts = ListenerOpts::new()
            .backlog(4096)
            .reuse_addr(true)
            .reuse_port(false);
        let listener = TcpListener::bind_with_config(addr, &opts)?;
        println!(
            "monoio_http: listening on http://{}",
            listener.local_addr()?
        );
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    monoio::spawn(serve(stream));
                }
                Err(e) => {
                    // Out of descriptors, say: back off instead of spinning.
                    eprintln!("monoio_http: accept failed: {e}");
                    monoio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    })
}

/// Serves one connection until the client closes it or an answer closes it.
async fn serve(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut conn = Conn::new();
    let mut input = Vec::with_capacity(conn::READ_CAPACITY);
    let mut out = Vec::with_capacity(conn::WRITE_CAPACITY);
    loop {
        // The read appends to `input`'s spare capacity, which `process`
        // keeps at least READ_CAPACITY - MAX_HEAD bytes large.
        let (len, cap) = (input.len(), input.capacity());
        let (res, slice) = stream.read(input.slice_mut(len..cap)).await;
        input = slice.into_inner();
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
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
            linger_close(stream, input).await;
            return;
        }
    }
}

/// Closes gracefully: sends FIN, then discards what the client still sends
/// (for at most a second or 64 KiB), so that closing with unread bytes does
/// not reset the connection and destroy the response before it is read.
async fn linger_close(mut stream: TcpStream, mut buf: Vec<u8>) {
    if stream.shutdown().await.is_err() {
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
    let _ = monoio::time::timeout(Duration::from_secs(1), drain).await;
}
