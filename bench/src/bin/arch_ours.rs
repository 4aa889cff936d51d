//! The architectures' protocol (`bench::arch`) on this runtime: one thread,
//! one io_uring, one task per connection, each read an `IORING_OP_RECV`
//! into the connection's input and each batch of answers one `write_all`.
//!
//! This is `ours` in the `arch` scenario. The seven `arch_*` servers share
//! [`bench::arch::answer`], a deliberately small HTTP/1.1; the `http`
//! example parses requests fully (about 1,750 of its 4,300 user-space
//! instructions per request under callgrind), so measured against the seven
//! it would show a parser's cost as an architecture's. Here the protocol
//! code and buffers are theirs and only the way connections reach it
//! differs: the runtime instead of a blocking loop, a fork, a thread, poll
//! or epoll.
//!
//! ```text
//! arch_ours <addr>
//! ```

use std::net::Shutdown;
use std::process::ExitCode;

use bench::arch::{self, Next};
use net::{TcpListener, TcpStream};

fn main() -> ExitCode {
    let (_, listener) = match arch::start("arch_ours", None) {
        Ok(started) => started,
        Err(code) => return code,
    };
    let rt = match runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("arch_ours: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let listener = TcpListener::from_std(listener);
        let mut incoming = listener.incoming();
        while let Some(conn) = incoming.next().await {
            match conn {
                Ok(stream) => {
                    runtime::spawn(serve(stream));
                }
                // The listener backs off by itself after a resource error
                // (see `TcpListener::accept`); an aborted connection is
                // skipped.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => {}
                Err(e) => eprintln!("arch_ours: accept failed: {e}"),
            }
        }
    });
    ExitCode::SUCCESS
}

/// Serves one connection until the client closes it, an error occurs, or a
/// request closes it: read, answer every complete request, write the
/// answers with one `write_all`, repeat (what [`arch::serve_blocking`] does
/// with blocking calls).
async fn serve(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    // The read appends to the spare capacity; after `answer` the tail left
    // is shorter than MAX_HEAD, so a read always has room for a full head.
    let mut input: Vec<u8> = Vec::with_capacity(arch::INPUT_CAPACITY);
    let mut out = Vec::with_capacity(arch::OUTPUT_CAPACITY);
    loop {
        let (res, buf) = stream.read(input).await;
        input = buf;
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let (used, next) = arch::answer(&input, &mut out);
        if !out.is_empty() {
            let (res, buf) = stream.write_all(out).await;
            out = buf;
            out.clear();
            if res.is_err() {
                return;
            }
        }
        if next == Next::Close {
            // FIN after the answers; dropping the stream closes it.
            let _ = stream.shutdown(Shutdown::Write);
            return;
        }
        input.drain(..used);
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::time::Duration;

    use super::*;

    /// Serves one connection of a client that writes `parts` (a pause
    /// between them) and reads to the end; returns what it read.
    fn exchange(parts: &'static [&'static [u8]]) -> Vec<u8> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = std::thread::spawn(move || {
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            for part in parts {
                c.write_all(part).unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
            let mut got = Vec::new();
            c.read_to_end(&mut got).unwrap();
            got
        });
        let rt = runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let listener = TcpListener::from_std(listener);
            let (stream, _) = listener.accept().await.unwrap();
            serve(stream).await;
        });
        client.join().unwrap()
    }

    #[test]
    fn pipelined_requests_are_answered_in_order_then_closed() {
        let got = exchange(&[
            b"GET / HTTP/1.1\r\n\r\nGET /?q=1 HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nConnection: close\r\n\r\n",
        ]);
        let want = [arch::RESPONSE, arch::RESPONSE, arch::RESPONSE_CLOSE].concat();
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want)
        );
    }

    #[test]
    fn a_head_split_across_reads_is_completed() {
        let got = exchange(&[b"GET / HTT", b"P/1.1\r\n\r", b"\nGET / HTTP/1.0\r\n\r\n"]);
        let want = [arch::RESPONSE, arch::RESPONSE_CLOSE].concat();
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want)
        );
    }

    #[test]
    fn an_unsupported_request_closes_without_an_answer() {
        let got = exchange(&[b"GET / HTTP/1.1\r\n\r\nDELETE / HTTP/1.1\r\n\r\n"]);
        assert_eq!(got, arch::RESPONSE);
    }
}
