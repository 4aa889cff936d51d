//! Shared code of the seven classic server architectures (`arch_iterative`,
//! `arch_fork`, `arch_prefork`, `arch_thread`, `arch_prethread`, `arch_poll`,
//! `arch_epoll`).
//!
//! The seven binaries differ only in how they get connections to the code
//! that serves them; the protocol, the buffers, the listener and the start-up
//! are here, so that a difference in their numbers is a difference of
//! architecture.
//!
//! # The protocol
//!
//! A deliberately small HTTP/1.1: a request is its head, which ends at the
//! first `\r\n\r\n`. `GET /` (a query string is ignored) answers exactly
//! [`RESPONSE`], the same bytes as the `http` example
//! (`examples/http/conn.rs`). Keep-alive is the default for HTTP/1.1;
//! `Connection: close` is honoured (the answer then says `Connection: close`
//! and the connection closes after it) and HTTP/1.0 keeps the connection
//! only when asked to, like the example. Pipelined requests are answered in
//! order, every complete request of one read with one write.
//!
//! Everything else closes the connection without an answer: a malformed
//! head (request line not `METHOD SP TARGET SP HTTP/1.0|1.1`, a header line
//! without a colon), a head longer than [`MAX_HEAD`] bytes, and requests this
//! server does not support (another method or path, a request body announced
//! by `Content-Length` other than 0 or by `Transfer-Encoding`). A benchmark
//! client sends none of those; closing is the cheapest answer that keeps the
//! stream in sync.
//!
//! # Buffers
//!
//! Each connection owns one input buffer of [`INPUT_CAPACITY`] bytes and one
//! output vector. After [`answer`] a partial head left over is shorter than
//! [`MAX_HEAD`], so a read always has at least `INPUT_CAPACITY - MAX_HEAD`
//! bytes of room and a request costs no allocation.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::process::ExitCode;
use std::time::Duration;

/// The answer to `GET /` on a kept-alive HTTP/1.1 connection: the same bytes
/// as the `http` example's.
pub const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";

/// The answer to `GET /` when the connection closes after it (the request
/// said `Connection: close`, or is HTTP/1.0 without keep-alive).
pub const RESPONSE_CLOSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nConnection: close\r\n\r\nHello, World!";

/// The answer to `GET /` on an HTTP/1.0 connection kept alive on request:
/// HTTP/1.0 clients need to be told that it stays open.
pub const RESPONSE_KEEP_ALIVE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nConnection: keep-alive\r\n\r\nHello, World!";

/// The longest request head accepted, terminator included: 8 KiB, the same
/// limit as the `http` example. A longer head closes the connection.
pub const MAX_HEAD: usize = 8 * 1024;

/// The size of a connection's input buffer: twice [`MAX_HEAD`], so that a
/// read always has room for at least one more full head.
pub const INPUT_CAPACITY: usize = 2 * MAX_HEAD;

/// The initial capacity of a connection's output vector (grows if a batch of
/// pipelined answers needs more).
pub const OUTPUT_CAPACITY: usize = 4096;

pub use crate::{listen, BACKLOG};

/// The default size of the two pools (`arch_prefork`, `arch_prethread`).
///
/// A pool of blocking workers serves at most that many connections at once:
/// with keep-alive clients, connection number `N + 1` waits in the backlog
/// until one of the first `N` closes. 8 is the classic "a few workers per
/// core" choice: on the suite's machine the server is pinned to one core, so
/// more workers than that add no CPU, only context switches, while a handful
/// keeps the core busy when one worker is between a write and its next read.
/// It is deliberately small, the fixed-size pool of the textbook version, so
/// that the measurement shows the pool's limit under hundreds of keep-alive
/// connections instead of hiding it behind thousands of workers. Pass another
/// size as the first argument to see the trade-off.
pub const DEFAULT_POOL: usize = 8;

/// What a connection does after the answers of one read were produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Write the answers and read the next requests.
    Read,
    /// Write the answers (possibly none), then close.
    Close,
}

/// What [`scan_head`] found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Head {
    /// A complete head of this many bytes, terminator included.
    Complete(usize),
    /// No terminator yet, and the head may still fit.
    Partial,
    /// No terminator within [`MAX_HEAD`] bytes.
    TooLong,
}

/// Finds the end of the head at the start of `buf`.
fn scan_head(buf: &[u8]) -> Head {
    let window = &buf[..buf.len().min(MAX_HEAD)];
    let mut from = 0;
    while let Some(i) = window[from..].iter().position(|&b| b == b'\n') {
        let nl = from + i;
        // `\r\n\r\n` ends at this `\n` if the three bytes before it are `\r\n\r`.
        if nl >= 3 && &window[nl - 3..nl] == b"\r\n\r" {
            return Head::Complete(nl + 1);
        }
        from = nl + 1;
    }
    if buf.len() >= MAX_HEAD {
        Head::TooLong
    } else {
        Head::Partial
    }
}

/// The answer to one complete head and whether the connection closes after
/// it, or `None` if the connection must close without one (malformed or
/// unsupported).
fn respond(head: &[u8]) -> Option<(&'static [u8], Next)> {
    // The head ends with "\r\n\r\n"; its lines are separated by "\r\n".
    let text = &head[..head.len() - 4];
    let mut lines = text
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let mut parts = lines.next()?.split(|&b| b == b' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || method.is_empty() || target.is_empty() {
        return None;
    }
    let http10 = match version {
        b"HTTP/1.1" => false,
        b"HTTP/1.0" => true,
        _ => return None,
    };
    let path = target.split(|&b| b == b'?').next().unwrap_or(target);
    if method != b"GET" || path != b"/" {
        return None;
    }
    let (mut close, mut keep_alive) = (false, false);
    for line in lines {
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            || (name.eq_ignore_ascii_case(b"content-length") && value.trim_ascii() != b"0")
        {
            // A body this server would have to frame: unsupported.
            return None;
        }
    }
    Some(if close || (http10 && !keep_alive) {
        (RESPONSE_CLOSE, Next::Close)
    } else if http10 {
        (RESPONSE_KEEP_ALIVE, Next::Read)
    } else {
        (RESPONSE, Next::Read)
    })
}

/// Answers every complete request at the start of `input`, appending the
/// answers to `out` in order. Returns how many bytes of `input` were used
/// (a partial head at the end is left for the next read to complete) and
/// whether the connection goes on.
///
/// On [`Next::Read`] the unused tail is shorter than [`MAX_HEAD`].
pub fn answer(input: &[u8], out: &mut Vec<u8>) -> (usize, Next) {
    let mut pos = 0;
    loop {
        match scan_head(&input[pos..]) {
            Head::Partial => return (pos, Next::Read),
            Head::TooLong => return (pos, Next::Close),
            Head::Complete(len) => {
                let Some((response, next)) = respond(&input[pos..pos + len]) else {
                    return (pos, Next::Close);
                };
                out.extend_from_slice(response);
                pos += len;
                if next == Next::Close {
                    return (pos, next);
                }
            }
        }
    }
}

/// Serves one connection with blocking I/O until the client closes it, an
/// error occurs, or a request closes it: read, answer every complete
/// request, write the answers with one `write_all`, repeat.
///
/// This is the whole per-connection work of the iterative, forking,
/// pre-forked, thread-per-connection and pre-threaded servers.
pub fn serve_blocking(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut input = vec![0u8; INPUT_CAPACITY];
    let mut filled = 0;
    let mut out = Vec::with_capacity(OUTPUT_CAPACITY);
    loop {
        match stream.read(&mut input[filled..]) {
            Ok(0) => return,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
        let (used, next) = answer(&input[..filled], &mut out);
        if !out.is_empty() {
            let res = stream.write_all(&out);
            out.clear();
            if res.is_err() {
                return;
            }
        }
        if next == Next::Close {
            // FIN after the answers; closing drops the socket.
            let _ = stream.shutdown(Shutdown::Write);
            return;
        }
        input.copy_within(used..filled, 0);
        filled -= used;
    }
}

/// What a nonblocking connection waits for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Readable: the next requests.
    Read,
    /// Writable: answers are still waiting to be written (the connection
    /// reads nothing more until they are all out, so a client that does not
    /// read its answers cannot make the server buffer without bound).
    Write,
    /// Nothing: the connection is finished; drop it to close it.
    Done,
}

/// One connection of the `poll(2)` and `epoll(7)` servers: a nonblocking
/// socket with its buffers, driven by readiness.
#[derive(Debug)]
pub struct NbConn {
    stream: TcpStream,
    input: Box<[u8]>,
    filled: usize,
    out: Vec<u8>,
    sent: usize,
    closing: bool,
}

impl NbConn {
    /// Wraps an accepted nonblocking socket (see [`accept_nonblocking`]);
    /// the connection first waits for [`Interest::Read`].
    pub fn new(stream: TcpStream) -> NbConn {
        NbConn {
            stream,
            input: vec![0u8; INPUT_CAPACITY].into_boxed_slice(),
            filled: 0,
            out: Vec::with_capacity(OUTPUT_CAPACITY),
            sent: 0,
            closing: false,
        }
    }

    /// The socket's descriptor, to register with `poll` or `epoll`.
    pub fn fd(&self) -> i32 {
        self.stream.as_raw_fd()
    }

    /// Does the work the socket is ready for (the one the last returned
    /// [`Interest`] asked for; readiness for an error or hang-up counts too)
    /// and returns what to wait for next.
    ///
    /// One read per call: with level-triggered readiness the loop comes back
    /// if more bytes are waiting, and other connections get their turn in
    /// between.
    pub fn on_ready(&mut self) -> Interest {
        if self.sent < self.out.len() {
            return self.flush();
        }
        match self.stream.read(&mut self.input[self.filled..]) {
            Ok(0) => return Interest::Done,
            Ok(n) => self.filled += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                return Interest::Read
            }
            Err(_) => return Interest::Done,
        }
        let (used, next) = answer(&self.input[..self.filled], &mut self.out);
        self.input.copy_within(used..self.filled, 0);
        self.filled -= used;
        self.closing = next == Next::Close;
        self.flush()
    }

    /// Writes what it can of the pending answers.
    fn flush(&mut self) -> Interest {
        while self.sent < self.out.len() {
            match self.stream.write(&self.out[self.sent..]) {
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Interest::Write,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Interest::Done,
            }
        }
        self.out.clear();
        self.sent = 0;
        if self.closing {
            let _ = self.stream.shutdown(Shutdown::Write);
            Interest::Done
        } else {
            Interest::Read
        }
    }
}

/// Accepts one connection as a nonblocking, close-on-exec socket with
/// `TCP_NODELAY` (one `accept4(2)` instead of accept plus `fcntl`).
/// Fails with `WouldBlock` when no connection is pending on a nonblocking
/// listener.
pub fn accept_nonblocking(listener: &TcpListener) -> io::Result<TcpStream> {
    loop {
        // SAFETY: the listener's descriptor is valid for the call; null
        // address pointers ask for no peer address.
        let fd = unsafe {
            libc::accept4(
                listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            )
        };
        if fd >= 0 {
            // SAFETY: accept4 returned a new descriptor that nothing else owns.
            let stream = unsafe { TcpStream::from_raw_fd(fd) };
            let _ = stream.set_nodelay(true);
            return Ok(stream);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Whether an accept error means "out of resources" (descriptors, memory):
/// the connection stays in the backlog, so retrying at once would fail at
/// once.
pub fn is_resource_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Handles an accept error of a blocking accept loop: reports it on stderr
/// and, if it is a resource error, waits 10 ms so the loop does not spin
/// while descriptors are short. Errors about one connection (aborted before
/// accept, say) are just skipped.
pub fn accept_failed(name: &str, e: &io::Error) {
    if is_resource_error(e) {
        eprintln!("{name}: accept failed: {e}");
        std::thread::sleep(Duration::from_millis(10));
    } else if e.kind() != io::ErrorKind::ConnectionAborted {
        eprintln!("{name}: accept failed: {e}");
    }
}

/// The start-up shared by the seven servers: parses the arguments
/// (`[workers] <addr>` for a pool, `<addr>` otherwise), raises the
/// descriptor limit, binds the listener and prints one line on stdout.
///
/// `default_workers` is `Some(size)` for the pools and `None` for the
/// others. Returns the pool size (1 when there is no pool) and the listener,
/// or the exit code to return after an error was printed on stderr.
pub fn start(name: &str, default_workers: Option<usize>) -> Result<(usize, TcpListener), ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || {
        match default_workers {
            Some(n) => eprintln!("usage: {name} [workers (default {n})] <addr>"),
            None => eprintln!("usage: {name} <addr>"),
        }
        ExitCode::from(2)
    };
    let (workers, addr) = match (default_workers, args.as_slice()) {
        (_, [addr]) => (default_workers.unwrap_or(1), addr),
        (Some(_), [workers, addr]) => match workers.parse::<usize>() {
            Ok(n) if n > 0 => (n, addr),
            _ => {
                eprintln!(
                    "{name}: the number of workers must be a positive integer, not {workers:?}"
                );
                return Err(usage());
            }
        },
        _ => return Err(usage()),
    };
    if let Err(e) = crate::raise_nofile_limit() {
        eprintln!("{name}: cannot raise the descriptor limit (continuing): {e}");
    }
    let listener = match listen(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{name}: cannot listen on {addr}: {e}");
            return Err(ExitCode::FAILURE);
        }
    };
    let local = listener
        .local_addr()
        .map_or_else(|_| addr.clone(), |a| a.to_string());
    match default_workers {
        Some(_) => println!("{name}: listening on http://{local} with {workers} workers"),
        None => println!("{name}: listening on http://{local}"),
    }
    Ok((workers, listener))
}

/// Forks a child process that runs `body` and exits with status 0; returns
/// the child's pid in the parent. In the parent, `body` is dropped unrun
/// (which closes whatever descriptors it owns: the parent's copies).
///
/// The child asks for `SIGKILL` when its parent dies
/// (`prctl(PR_SET_PDEATHSIG)`), and exits at once if the parent already died
/// before it asked, so killing the server's parent process, however it is
/// killed, leaves no stray children.
///
/// # Safety
///
/// The calling process must be single-threaded: after `fork` the child has
/// only the calling thread, and a lock held by another thread (the
/// allocator's, say) would stay locked forever in the child.
pub unsafe fn fork_child(body: impl FnOnce()) -> io::Result<libc::pid_t> {
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the caller guarantees the process is single-threaded, so the
    // child is a complete copy in which any code may run.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number;
            // getppid has no preconditions.
            let orphan = unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 || libc::getppid() != parent
            };
            if !orphan {
                body();
            }
            // SAFETY: _exit ends the child without running the parent's
            // atexit handlers or unwinding its copied stack.
            unsafe { libc::_exit(0) }
        }
        pid => Ok(pid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8]) -> (String, usize, Next) {
        let mut out = Vec::new();
        let (used, next) = answer(input, &mut out);
        (String::from_utf8(out).unwrap(), used, next)
    }

    #[test]
    fn one_request() {
        let req = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let (out, used, next) = run(req);
        assert_eq!(out.as_bytes(), RESPONSE);
        assert_eq!((used, next), (req.len(), Next::Read));
    }

    #[test]
    fn pipelined_requests_and_a_partial_tail() {
        let req = b"GET / HTTP/1.1\r\n\r\nGET /?x=1 HTTP/1.1\r\nA: b\r\n\r\nGET / HT";
        let (out, used, next) = run(req);
        assert_eq!(out.as_bytes(), [RESPONSE, RESPONSE].concat());
        assert_eq!(&req[used..], b"GET / HT");
        assert_eq!(next, Next::Read);
    }

    #[test]
    fn connection_close_and_http_1_0() {
        let (out, _, next) =
            run(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        assert_eq!(out.as_bytes(), RESPONSE_CLOSE);
        assert_eq!(next, Next::Close);
        let (out, _, next) = run(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!((out.as_bytes(), next), (RESPONSE_CLOSE, Next::Close));
        let (out, _, next) = run(b"GET / HTTP/1.0\r\nconnection: Keep-Alive\r\n\r\n");
        assert_eq!((out.as_bytes(), next), (RESPONSE_KEEP_ALIVE, Next::Read));
    }

    #[test]
    fn malformed_and_unsupported_close_after_earlier_answers() {
        for bad in [
            &b"BLAH\r\n\r\n"[..],
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET /  HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
            b"POST / HTTP/1.1\r\n\r\n",
            b"GET /x HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 3\r\n\r\n",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            let input = [&b"GET / HTTP/1.1\r\n\r\n"[..], bad].concat();
            let (out, _, next) = run(&input);
            assert_eq!(
                out.as_bytes(),
                RESPONSE,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
            assert_eq!(next, Next::Close);
        }
    }

    #[test]
    fn head_size_limit() {
        let mut head = b"GET / HTTP/1.1\r\nX: ".to_vec();
        head.resize(MAX_HEAD - 4, b'a');
        head.extend_from_slice(b"\r\n\r\n");
        assert_eq!(run(&head).2, Next::Read);
        assert_eq!(run(&head).1, MAX_HEAD);
        let mut long = head[..MAX_HEAD - 4].to_vec();
        long.push(b'a');
        assert_eq!(
            run(&long).2,
            Next::Read,
            "a partial head under the limit waits"
        );
        long.extend_from_slice(b"aaa");
        assert_eq!(run(&long).2, Next::Close, "no terminator in MAX_HEAD bytes");
        let (out, used, next) = run(&[&b"GET / HTTP/1.1\r\n\r\n"[..], &long].concat());
        assert_eq!((out.as_bytes(), used, next), (RESPONSE, 18, Next::Close));
    }

    #[test]
    fn split_byte_by_byte() {
        let req = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        for end in 0..req.len() {
            assert_eq!(run(&req[..end]), (String::new(), 0, Next::Read));
        }
        assert_eq!(run(req).1, req.len());
    }
}
