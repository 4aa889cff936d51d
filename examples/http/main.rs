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
//! ```text
//! cargo run --release -p examples --example http -- 127.0.0.1:8080
//! curl -i http://127.0.0.1:8080/
//! wrk -t1 -c256 -d10s http://127.0.0.1:8080/
//! ```

mod conn;
#[cfg(test)]
mod fuzz_tests;
mod parser;

use std::io;
use std::net::Shutdown;
use std::time::Duration;

use net::{TcpListener, TcpStream};

use conn::{Conn, Next};

/// Binds the address from the first argument (default `127.0.0.1:8080`) and
/// serves until killed.
#[runtime::main]
async fn main() -> io::Result<()> {
    let addr = examples::arg_or("127.0.0.1:8080");
    let listener = TcpListener::bind(addr.as_str())?;
    println!("http: listening on http://{}", listener.local_addr()?);
    let mut incoming = listener.incoming();
    while let Some(conn) = incoming.next().await {
        match conn {
            Ok(stream) => {
                runtime::spawn(serve(stream));
            }
            // Out of descriptors, say: the listener backs off by itself and
            // keeps accepting once descriptors free up.
            Err(e) => eprintln!("http: accept failed: {e}"),
        }
    }
    Ok(())
}

/// Serves one connection until the client closes it or an answer closes it.
async fn serve(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut conn = Conn::new();
    let mut input = Vec::with_capacity(conn::READ_CAPACITY);
    let mut out = Vec::with_capacity(conn::WRITE_CAPACITY);
    loop {
        // The read appends to `input`'s spare capacity, which `process`
        // keeps at least READ_CAPACITY - MAX_HEAD bytes large.
        let (res, buf) = stream.read(input).await;
        input = buf;
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
            linger_close(&stream, input).await;
            return;
        }
    }
}

/// Closes gracefully: sends FIN, then discards what the client still sends
/// (for at most a second or 64 KiB), so that closing with unread bytes does
/// not reset the connection and destroy the response before it is read.
async fn linger_close(stream: &TcpStream, mut buf: Vec<u8>) {
    if stream.shutdown(Shutdown::Write).is_err() {
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
