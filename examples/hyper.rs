//! An HTTP server on hyper 1.x's own connection builders, on this runtime:
//! HTTP/1.1 with keep-alive, and HTTP/2 over cleartext with prior knowledge
//! (h2c), chosen per connection from its first bytes.
//!
//! `cargo run --release -p examples --example hyper -- 127.0.0.1:8081`
//! (the address is optional; that one is the default), then
//! `curl http://127.0.0.1:8081/`, `curl --http2-prior-knowledge
//! http://127.0.0.1:8081/` or `curl --data-binary @file
//! http://127.0.0.1:8081/echo`.
//!
//! Routes: `GET /` answers `Hello, World!` as `text/plain` (the same answer
//! as the `http` example); `POST /echo` answers the request body; anything
//! else is `404`. The connection is `net::TcpStream` itself (cargo feature
//! `hyper` of `net`: `hyper::rt::Read` and `Write`), hyper's executor and
//! timer are `runtime::hyper::{Executor, Timer}` (feature `hyper` of
//! `runtime`).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use net::TcpListener;

/// The body of `GET /`.
const HELLO: &[u8] = b"Hello, World!";

/// Answers one request.
async fn serve(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let response = match (req.method(), req.uri().path()) {
        (&Method::GET, "/") => Response::builder()
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from_static(HELLO))),
        (&Method::POST, "/echo") => {
            let body = req.into_body().collect().await?.to_bytes();
            Response::builder()
                .header("content-type", "application/octet-stream")
                .body(Full::new(body))
        }
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::new())),
    };
    Ok(response.expect("a valid response"))
}

#[runtime::main]
async fn main() -> std::io::Result<()> {
    let addr = examples::arg_or("127.0.0.1:8081");
    let listener = TcpListener::bind(addr.as_str())?;
    println!("hyper: listening on {}", listener.local_addr()?);
    let builder = examples::hyper_builder();
    let mut incoming = listener.incoming();
    while let Some(conn) = incoming.next().await {
        let stream = match conn {
            Ok(stream) => stream,
            Err(e) => {
                eprintln!("hyper: accept failed: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        runtime::spawn(async move {
            let service = service_fn(serve);
            if let Err(e) = builder.serve_connection(stream, service).await {
                // A client that hangs up mid-request, or malformed HTTP.
                eprintln!("hyper: connection ended: {e}");
            }
        });
    }
    Ok(())
}
