//! The iterative server: one connection at a time.
//!
//! The main (and only) thread blocks in `accept`, serves the accepted
//! connection with blocking reads and writes until it closes
//! ([`bench::arch::serve_blocking`]), and only then accepts the next one.
//! No concurrency at all: the simplest server there is, and the baseline of
//! the seven architectures.
//!
//! Known limits: with keep-alive, the other clients wait. Their connections
//! complete in the kernel (the listen backlog holds up to 4096) but are not
//! read until every connection accepted before them has closed. Under
//! `wrk -c200`, one connection is served for the whole run and the other 199
//! get no answer (wrk counts their requests as timeouts, then closes them
//! at the end; the server then accepts and drops each closed connection in
//! turn). wrk still completes and reports: the requests per second are
//! those of a single connection. A client that stalls stalls the server.
//!
//! ```text
//! cargo run --release -p bench --bin arch_iterative -- 127.0.0.1:9301
//! ```

use std::process::ExitCode;

use bench::arch;

fn main() -> ExitCode {
    let (_, listener) = match arch::start("arch_iterative", None) {
        Ok(started) => started,
        Err(code) => return code,
    };
    loop {
        match listener.accept() {
            Ok((stream, _)) => arch::serve_blocking(stream),
            Err(e) => arch::accept_failed("arch_iterative", &e),
        }
    }
}
