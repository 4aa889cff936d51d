//! Helpers shared by the example programs in this directory (among them
//! the graceful shutdown of the `echo`, `http` and `kv` servers), and the
//! server logic of the ecosystem examples (`axum`, `tls`, `chat`, `grpc`), which
//! the integration tests run in-process.

use std::net::SocketAddr;
use std::time::Duration;

/// The servers of the ecosystem examples; each example's `main` parses its
/// arguments and calls one of these.
pub mod servers {
    pub mod chat;
    pub mod grpc;
    pub mod tls;
    pub mod todo;
}

pub mod shutdown;

/// The first command-line argument, or `default` if there is none.
pub fn arg_or(default: &str) -> String {
    std::env::args()
        .nth(1)
        .unwrap_or_else(|| default.to_string())
}

/// The next connection on `listener`. A failed accept (out of descriptors,
/// a connection reset before it was accepted) is logged with `name` and
/// retried after a short pause, so a server never stops accepting and
/// never spins on `EMFILE`.
pub async fn accept(listener: &net::TcpListener, name: &str) -> (net::TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(conn) => return conn,
            Err(e) => {
                eprintln!("{name}: accept failed: {e}");
                runtime::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// hyper-util's connection builder as the ecosystem examples serve with it:
/// HTTP/1.1 or HTTP/2 (prior knowledge, or ALPN behind TLS) chosen per
/// connection, this runtime's executor and timer, and a 30 s header-read
/// timeout for HTTP/1.1.
pub fn hyper_builder() -> hyper_util::server::conn::auto::Builder<runtime::hyper::Executor> {
    let mut builder = hyper_util::server::conn::auto::Builder::new(runtime::hyper::Executor);
    builder
        .http1()
        .timer(runtime::hyper::Timer)
        .header_read_timeout(Duration::from_secs(30));
    builder.http2().timer(runtime::hyper::Timer);
    builder
}
