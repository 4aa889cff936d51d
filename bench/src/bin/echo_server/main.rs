//! The TCP echo server of the benchmark suite, on each runtime in turn.
//!
//! ```text
//! echo_server <runtime> <addr>
//! ```
//!
//! `<runtime>` is one of `ours`, `tokio`, `raw`, `monoio`, `tokio_uring`,
//! `glommio`, `compio`. Every variant does the same thing, so that only the
//! runtime differs: one thread; per connection a 16 KiB buffer; read what
//! arrives, write all of it back, until the peer closes. Serves until killed.

mod compio_rt;
mod glommio_rt;
mod monoio_rt;
mod ours;
mod raw;
mod tokio_rt;
mod tokio_uring_rt;

use std::net::SocketAddr;

/// Size of each connection's buffer, the same for every runtime.
pub const BUF_SIZE: usize = 16 * 1024;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(rt), Some(addr)) = (args.next(), args.next()) else {
        eprintln!("usage: echo_server <ours|tokio|raw|monoio|tokio_uring|glommio|compio> <addr>");
        std::process::exit(2);
    };
    let addr: SocketAddr = match addr.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("echo_server: bad address {addr:?}: {e}");
            std::process::exit(2);
        }
    };
    let result = match rt.as_str() {
        "ours" => ours::run(addr),
        "tokio" => tokio_rt::run(addr),
        "raw" => raw::run(addr),
        "monoio" => monoio_rt::run(addr),
        "tokio_uring" => tokio_uring_rt::run(addr),
        "glommio" => glommio_rt::run(addr),
        "compio" => compio_rt::run(addr),
        other => {
            eprintln!("echo_server: unknown runtime {other:?}");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("echo_server {rt}: {e}");
        std::process::exit(1);
    }
}
