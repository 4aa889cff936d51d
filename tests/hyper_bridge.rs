//! hyper 1.x's server on this runtime (`net`'s `hyper` feature on
//! `TcpStream`, `runtime::hyper::{Executor, Timer}`), driven by hyper's own
//! client on a tokio runtime in another thread: HTTP/1.1 keep-alive,
//! HTTP/2 with 200 concurrent streams and bodies up to 1 MiB, hyper's
//! header-read timeout firing, and malformed requests answered with a
//! closed connection, never a stuck or panicking server.

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use integration_tests::{on_runtime, tokio_rt};
use net::TcpListener;

const LIMIT: Duration = Duration::from_secs(120);

async fn serve(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    Ok(match (req.method(), req.uri().path()) {
        (&Method::GET, "/") => Response::new(Full::new(Bytes::from_static(b"Hello, World!"))),
        (&Method::POST, "/echo") => {
            let body = req.into_body().collect().await?.to_bytes();
            Response::new(Full::new(body))
        }
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::new()))
            .unwrap(),
    })
}

/// Serves hyper on this runtime while `client` runs on its own thread with
/// the server's address; returns the client's result.
async fn with_server<T: Send + 'static>(
    client: impl FnOnce(SocketAddr) -> T + Send + 'static,
) -> T {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut builder = auto::Builder::new(runtime::hyper::Executor);
    builder.http1().timer(runtime::hyper::Timer);
    builder.http2().timer(runtime::hyper::Timer);
    let server = runtime::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let builder = builder.clone();
            runtime::spawn(async move {
                let _ = builder.serve_connection(stream, service_fn(serve)).await;
            });
        }
    });
    let out = runtime::spawn_blocking(move || client(addr)).await.unwrap();
    server.abort();
    out
}

/// [`with_server`] with hyper's HTTP/1 builder alone and a header-read
/// timeout.
async fn with_http1_server<T: Send + 'static>(
    header_read_timeout: Duration,
    client: impl FnOnce(SocketAddr) -> T + Send + 'static,
) -> T {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(runtime::hyper::Timer)
        .header_read_timeout(header_read_timeout);
    let server = runtime::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let conn = builder.serve_connection(stream, service_fn(serve));
            runtime::spawn(async move {
                let _ = conn.await;
            });
        }
    });
    let out = runtime::spawn_blocking(move || client(addr)).await.unwrap();
    server.abort();
    out
}

fn body_of(len: usize, seed: usize) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| ((i * 7 + seed) % 251) as u8)
            .collect::<Vec<u8>>(),
    )
}

#[test]
fn http1_keep_alive_with_hypers_client() {
    on_runtime(LIMIT, || {
        with_server(|addr| {
            tokio_rt().block_on(async move {
                let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(tcp))
                        .await
                        .unwrap();
                tokio::spawn(conn);
                for i in 0..200usize {
                    let req = if i % 2 == 0 {
                        Request::get("/").body(Full::new(Bytes::new())).unwrap()
                    } else {
                        let len = (i * 5003) % (1 << 20);
                        Request::post("/echo")
                            .body(Full::new(body_of(len, i)))
                            .unwrap()
                    };
                    let res = sender.send_request(req).await.unwrap();
                    assert_eq!(res.status(), StatusCode::OK);
                    let body = res.into_body().collect().await.unwrap().to_bytes();
                    if i % 2 == 0 {
                        assert_eq!(&body[..], b"Hello, World!");
                    } else {
                        assert!(body == body_of((i * 5003) % (1 << 20), i), "echo {i}");
                    }
                }
            })
        })
    });
}

#[test]
fn http2_with_200_concurrent_streams() {
    on_runtime(LIMIT, || {
        with_server(|addr| {
            tokio_rt().block_on(async move {
                let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                let (sender, conn) = hyper::client::conn::http2::handshake::<_, _, Full<Bytes>>(
                    TokioExecutor::new(),
                    TokioIo::new(tcp),
                )
                .await
                .unwrap();
                tokio::spawn(conn);
                let mut tasks = Vec::new();
                for i in 0..200usize {
                    let mut sender = sender.clone();
                    tasks.push(tokio::spawn(async move {
                        let len = if i % 50 == 0 {
                            1 << 20
                        } else {
                            (i * 7919) % 65536
                        };
                        let req = Request::post("/echo")
                            .body(Full::new(body_of(len, i)))
                            .unwrap();
                        let res = sender.send_request(req).await.unwrap();
                        assert_eq!(res.status(), StatusCode::OK);
                        let body = res.into_body().collect().await.unwrap().to_bytes();
                        assert!(body == body_of(len, i), "stream {i}: body differs");
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
            })
        })
    });
}

/// hyper's header-read timeout runs on `runtime::hyper::Timer`: a client
/// that connects and sends nothing is disconnected. (HTTP/1-only server:
/// hyper-util's auto builder waits for the first bytes to choose the
/// protocol before any timeout applies.)
#[test]
fn header_read_timeout_fires() {
    on_runtime(LIMIT, || {
        with_http1_server(Duration::from_millis(200), |addr| {
            let mut idle = std::net::TcpStream::connect(addr).unwrap();
            idle.set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            let started = std::time::Instant::now();
            let mut buf = [0u8; 512];
            // hyper answers 408 or just closes; either way the stream ends.
            loop {
                match idle.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => continue,
                    Err(e) => panic!("the idle connection was not closed: {e}"),
                }
            }
            assert!(started.elapsed() >= Duration::from_millis(150));
        })
    });
}

/// Garbage instead of HTTP: the connection is closed, and the server goes
/// on serving.
#[test]
fn malformed_requests_close_the_connection() {
    on_runtime(LIMIT, || {
        with_server(|addr| {
            for garbage in [
                &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n"[..],
                b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: zzz\r\n\r\n",
                // The HTTP/2 preface, then a SETTINGS frame on stream 1
                // (a connection error: SETTINGS belong to stream 0).
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x01",
            ] {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                s.write_all(garbage).unwrap();
                let mut out = Vec::new();
                match s.read_to_end(&mut out) {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
                    Err(e) => panic!("the connection was not closed: {e}"),
                }
            }
            // Still serving.
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
            assert!(out.ends_with("Hello, World!"), "{out}");
        })
    });
}

/// `curl --http2-prior-knowledge` (h2c) and plain HTTP/1.1 against hyper on
/// this runtime, with a 1 MiB body echoed. `.ci/run` installs curl.
#[test]
fn curl_http2_prior_knowledge_and_http1() {
    on_runtime(LIMIT, || {
        with_server(|addr| {
            let dir = std::env::temp_dir().join(format!("hyper-curl-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let body = dir.join("body");
            let data = body_of(1 << 20, 3);
            std::fs::write(&body, &data).unwrap();
            for flags in [&["--http2-prior-knowledge"][..], &["--http1.1"][..]] {
                let out = std::process::Command::new("curl")
                    .args(["-sS", "--max-time", "30", "-w", "\n%{http_version}"])
                    .args(flags)
                    .arg(format!("http://{addr}/"))
                    .output()
                    .expect("curl (installed by .ci/run)");
                assert!(out.status.success(), "{out:?}");
                let text = String::from_utf8(out.stdout).unwrap();
                let version = if flags[0] == "--http1.1" { "1.1" } else { "2" };
                assert_eq!(text, format!("Hello, World!\n{version}"));
                let out = std::process::Command::new("curl")
                    .args(["-sS", "--max-time", "30", "--data-binary"])
                    .arg(format!("@{}", body.display()))
                    .args(flags)
                    .arg(format!("http://{addr}/echo"))
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{out:?}");
                assert!(out.stdout == data, "echoed body differs ({flags:?})");
            }
            std::fs::remove_dir_all(&dir).unwrap();
        })
    });
}
