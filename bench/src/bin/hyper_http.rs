//! The `http` example's answer served by hyper: hyper 1's HTTP/1.1 server on
//! a tokio `current_thread` runtime, the ecosystem's standard stack, as a
//! peer for our server and `tokio_http`.
//!
//! One task per connection, keep-alive on (hyper's default, set explicitly),
//! `TCP_NODELAY` on accepted sockets, pipelined requests answered in order.
//! `GET /` (and `HEAD /`) answer `Hello, World!` as `text/plain` with the
//! example's header names and case (`title_case_headers`), but hyper also
//! adds its own `Date` header to every response, so the answer is 37 bytes
//! longer than the example's: `HTTP/1.1 200 OK\r\nContent-Type:
//! text/plain\r\nContent-Length: 13\r\nDate: <IMF-fixdate>\r\n\r\nHello,
//! World!`. Other paths get 404 and other methods on `/` 405, like the
//! example. Malformed requests are hyper's to answer (400, then close); its
//! head size limit is its default read buffer limit (about 400 KiB), not the
//! example's 8 KiB.
//!
//! `pipeline_flush` stays off (hyper's default): with it on, hyper holds the
//! answers to complete pipelined requests while a partial request follows
//! them in the buffer, until that request completes, so a client that
//! waits for its answers before sending the rest would hang.
//!
//! The listener is the suite's (`SO_REUSEADDR`, backlog 4096, descriptor
//! limit raised; see `bench::arch`), handed to tokio.
//!
//! `--rt ours` serves the same hyper service on this runtime instead
//! (`net::TcpStream` through net's `hyper` feature, one `runtime::spawn`ed
//! task per connection): the same HTTP stack on both runtimes, so the
//! difference is the runtime's I/O. `--h2` serves HTTP/2 over cleartext with
//! prior knowledge (hyper's HTTP/2 builder, the runtime's executor) instead
//! of HTTP/1.1.
//!
//! `--threads N` (default 1) serves on N threads, for the scaling scenario
//! (`threads`): with `--rt tokio`, tokio's multi-thread runtime with N
//! workers (work stealing), the accept loop itself a task on it, so that
//! the N workers are the only threads doing the work; with `--rt ours`, a
//! `runtime::Pool` of N workers, each with its own `SO_REUSEPORT`
//! listener on the same port (`net::TcpListener::bind_reuseport`, the
//! kernel spreading connections) serving its own connections. `--threads
//! 1` is the single-threaded server above (tokio's current-thread
//! runtime; one `runtime::Runtime`).
//!
//! ```text
//! cargo run --release -p bench --bin hyper_http -- 127.0.0.1:9308 [--rt ours|tokio] [--h2] [--threads N]
//! curl -i http://127.0.0.1:9308/
//! ```

use std::convert::Infallible;
use std::process::ExitCode;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut addr, mut ours, mut h2) = (None, false, false);
    let mut threads = 1;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--threads" => match it.next().and_then(|n| n.parse::<usize>().ok()) {
                Some(n) if n > 0 => threads = n,
                _ => {
                    addr = None;
                    break;
                }
            },
            "--rt" => match it.next().map(String::as_str) {
                Some("ours") => ours = true,
                Some("tokio") => ours = false,
                _ => addr = None,
            },
            "--h2" => h2 = true,
            other if addr.is_none() && !other.starts_with("--") => addr = Some(other.to_owned()),
            _ => {
                addr = None;
                break;
            }
        }
    }
    let Some(addr) = addr else {
        eprintln!("usage: hyper_http <addr> [--rt ours|tokio] [--h2] [--threads N]");
        return ExitCode::from(2);
    };
    if let Err(e) = bench::raise_nofile_limit() {
        eprintln!("hyper_http: cannot raise the descriptor limit (continuing): {e}");
    }
    if ours && threads > 1 {
        return serve_ours_pool(&addr, threads, h2);
    }
    let std_listener = match bench::listen(&addr).and_then(|l| {
        l.set_nonblocking(true)?;
        Ok(l)
    }) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("hyper_http: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if ours {
        return serve_ours(std_listener, h2);
    }
    let rt = if threads > 1 {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hyper_http: cannot start tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    let serve = async move {
        let listener = match TcpListener::from_std(std_listener) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("hyper_http: cannot register the listener: {e}");
                return ExitCode::FAILURE;
            }
        };
        match listener.local_addr() {
            Ok(local) => println!("hyper_http: listening on http://{local}"),
            Err(_) => println!("hyper_http: listening on http://{addr}"),
        }
        let builder = http1_builder();
        let h2_builder = http2::Builder::new(TokioExecutor::new());
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let io = TokioIo::new(stream);
                    if h2 {
                        let conn = h2_builder.serve_connection(io, service_fn(hello));
                        tokio::spawn(async move {
                            let _ = conn.await;
                        });
                    } else {
                        let conn = builder.serve_connection(io, service_fn(hello));
                        tokio::spawn(async move {
                            // A connection error (reset, malformed request)
                            // ends that connection only.
                            let _ = conn.await;
                        });
                    }
                }
                Err(e) => {
                    // Out of descriptors, say: back off instead of spinning.
                    eprintln!("hyper_http: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    };
    if threads > 1 {
        // The accept loop on a worker too, not on this thread.
        rt.block_on(async { tokio::spawn(serve).await.unwrap_or(ExitCode::FAILURE) })
    } else {
        rt.block_on(serve)
    }
}

/// hyper's HTTP/1.1 builder with the settings of both runtimes.
fn http1_builder() -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .keep_alive(true)
        .title_case_headers(true)
        // See the module documentation.
        .pipeline_flush(false);
    builder
}

/// The same service on this runtime (`--rt ours`).
fn serve_ours(std_listener: std::net::TcpListener, h2: bool) -> ExitCode {
    let rt = match runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hyper_http: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let listener = net::TcpListener::from_std(std_listener);
        match listener.local_addr() {
            Ok(local) => println!("hyper_http (ours): listening on http://{local}"),
            Err(_) => println!("hyper_http (ours): listening"),
        }
        accept_loop(listener, h2).await;
        ExitCode::SUCCESS
    })
}

/// `--rt ours --threads N`: a pool of N workers, each with its own
/// `SO_REUSEPORT` listener on `addr`'s port. The port (the real one if
/// `addr`'s is 0) is learnt from a first socket bound with `SO_REUSEPORT`
/// and not listening (so it never receives a connection), dropped once
/// every worker listens.
fn serve_ours_pool(addr: &str, threads: usize, h2: bool) -> ExitCode {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::net::{SocketAddr, ToSocketAddrs};
    let held = addr
        .to_socket_addrs()
        .and_then(|mut a| {
            a.next()
                .ok_or_else(|| std::io::Error::other("the address resolves to nothing"))
        })
        .and_then(|a| {
            let s = Socket::new(Domain::for_address(a), Type::STREAM, Some(Protocol::TCP))?;
            s.set_reuse_address(true)?;
            s.set_reuse_port(true)?;
            s.bind(&a.into())?;
            let local: SocketAddr = s
                .local_addr()?
                .as_socket()
                .ok_or_else(|| std::io::Error::other("not an IP address"))?;
            Ok((s, local))
        });
    let (held, local) = match held {
        Ok(h) => h,
        Err(e) => {
            eprintln!("hyper_http: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let pool = match runtime::Pool::builder().threads(threads).build() {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("hyper_http: cannot start the pool: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ready = std::sync::atomic::AtomicUsize::new(0);
    let held = std::sync::Mutex::new(Some(held));
    let listeners = pool.run(|_| {
        // On the worker: its own listener.
        let bound = net::TcpListener::bind_reuseport(local);
        if ready.fetch_add(1, std::sync::atomic::Ordering::AcqRel) + 1 == threads {
            drop(held.lock().unwrap().take());
            println!("hyper_http (ours, {threads} workers): listening on http://{local}");
        }
        async move {
            accept_loop(bound?, h2).await;
            Ok::<(), std::io::Error>(())
        }
    });
    for l in listeners {
        if let Err(e) = l {
            eprintln!("hyper_http: a worker cannot listen on {local}: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// Serves every connection `listener` accepts, each on its own task of
/// this runtime.
async fn accept_loop(listener: net::TcpListener, h2: bool) {
    let builder = http1_builder();
    let h2_builder = http2::Builder::new(runtime::hyper::Executor);
    let mut incoming = listener.incoming();
    while let Some(conn) = incoming.next().await {
        let stream = match conn {
            Ok(stream) => stream,
            Err(e) => {
                eprintln!("hyper_http: accept failed: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        if h2 {
            let conn = h2_builder.serve_connection(stream, service_fn(hello));
            runtime::spawn(async move {
                let _ = conn.await;
            });
        } else {
            let conn = builder.serve_connection(stream, service_fn(hello));
            runtime::spawn(async move {
                let _ = conn.await;
            });
        }
    }
}

/// Answers one request: `Hello, World!` for `GET /` and `HEAD /`, 405 for
/// other methods on `/`, 404 elsewhere.
async fn hello(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body): (StatusCode, &'static [u8]) = if req.uri().path() == "/" {
        if req.method() == Method::GET || req.method() == Method::HEAD {
            (StatusCode::OK, b"Hello, World!")
        } else {
            (StatusCode::METHOD_NOT_ALLOWED, b"Method Not Allowed\n")
        }
    } else {
        (StatusCode::NOT_FOUND, b"Not Found\n")
    };
    let mut resp = Response::new(Full::new(Bytes::from_static(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    Ok(resp)
}
