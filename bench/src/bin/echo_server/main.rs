//! The TCP echo server of the benchmark suite, on each runtime in turn.
//!
//! ```text
//! echo_server <runtime> <addr>
//! ```
//!
//! `<runtime>` is one of `ours`, `ours_multishot` (multishot receive into a
//! provided buffer ring), `tokio`, `raw`, `monoio`, `tokio_uring`,
//! `glommio`, `compio`. Every variant does the same thing, so that only the
//! runtime differs: one thread; per connection a 16 KiB buffer; read what
//! arrives, write all of it back, until the peer closes; `TCP_NODELAY` on
//! accepted sockets. The listening socket has `SO_REUSEADDR` and a backlog
//! of 4096 ([`bench::listen`] makes one so). Serves until killed; prints nothing on
//! stdout. At start the soft limit on open descriptors is raised to the hard
//! limit, for every runtime, so that thousands of connections work.

mod compio_rt;
mod glommio_rt;
mod monoio_rt;
mod ours;
mod ours_multishot;
mod raw;
mod tokio_rt;
mod tokio_uring_rt;

use std::net::SocketAddr;

/// Size of each connection's buffer, the same for every runtime.
pub const BUF_SIZE: usize = 16 * 1024;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(rt), Some(addr)) = (args.next(), args.next()) else {
        eprintln!("usage: echo_server <ours|ours_multishot|tokio|raw|monoio|tokio_uring|glommio|compio> <addr>");
        std::process::exit(2);
    };
    let addr: SocketAddr = match addr.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("echo_server: bad address {addr:?}: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = bench::raise_nofile_limit() {
        // Not fatal: only many connections need it.
        eprintln!("echo_server: cannot raise the descriptor limit: {e}");
    }
    let result = match rt.as_str() {
        "ours" => ours::run(addr),
        "ours_multishot" => ours_multishot::run(addr),
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
