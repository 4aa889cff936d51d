//! The `http` example's server on tokio, for benchmarking against it.
//!
//! Same protocol code (it includes `examples/http/parser.rs` and
//! `examples/http/conn.rs`, so both servers parse and answer byte for byte
//! alike), same buffer sizes, one task per connection, one write per batch of
//! pipelined responses; only the runtime differs. Like ours it runs on one
//! thread: a `current_thread` tokio runtime.
//!
//! ```text
//! cargo run --release -p bench --bin tokio_http -- 127.0.0.1:8081
//! wrk -t1 -c256 -d10s http://127.0.0.1:8081/
//! ```

#[path = "../../../examples/http/conn.rs"]
mod conn;
#[path = "../../../examples/http/parser.rs"]
mod parser;

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use conn::{Conn, Next};

/// Binds the address from the first argument (default `127.0.0.1:8080`) and
/// serves until killed.
fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".to_string());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = TcpListener::bind(&addr).await?;
        println!("tokio_http: listening on http://{}", listener.local_addr()?);
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(serve(stream));
                }
                Err(e) => {
                    // Out of descriptors, say: back off instead of spinning.
                    eprintln!("tokio_http: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
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
        // `read_buf` fills the vector's spare capacity, which `process`
        // keeps at least READ_CAPACITY - MAX_HEAD bytes large.
        match stream.read_buf(&mut input).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let next = conn.process(&mut input, &mut out);
        if !out.is_empty() {
            let res = stream.write_all(&out).await;
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
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}
