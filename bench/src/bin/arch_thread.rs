//! The thread-per-connection server.
//!
//! The main thread blocks in `accept`; every connection gets a new thread
//! that serves it with blocking I/O ([`bench::arch::serve_blocking`]) and
//! ends when it closes. Threads are detached (never joined) and start with a
//! 64 KiB stack: the connection's buffers are on the heap, so the serving
//! code needs little, and 1,000 connections reserve 64 MiB of address space
//! instead of 2 GiB with std's default 2 MiB stacks.
//!
//! Known limits: a thread creation (`clone`, stack `mmap`) per connection,
//! and one kernel thread per open connection: 1,000 connections are 1,000
//! threads for the scheduler, and every request costs context switches
//! between them. When a thread cannot be created the connection is closed
//! unanswered and the accept loop waits 10 ms.
//!
//! ```text
//! cargo run --release -p bench --bin arch_thread -- 127.0.0.1:9304
//! ```

use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use bench::arch;

/// The stack size of a connection's thread.
const STACK: usize = 64 * 1024;

fn main() -> ExitCode {
    let (_, listener) = match arch::start("arch_thread", None) {
        Ok(started) => started,
        Err(code) => return code,
    };
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                let spawned = thread::Builder::new()
                    .stack_size(STACK)
                    .spawn(move || arch::serve_blocking(stream));
                // On failure the closure, and with it the connection, is
                // dropped: closed.
                if let Err(e) = spawned {
                    eprintln!("arch_thread: cannot start a thread: {e}");
                    thread::sleep(Duration::from_millis(10));
                }
            }
            Err(e) => arch::accept_failed("arch_thread", &e),
        }
    }
}
