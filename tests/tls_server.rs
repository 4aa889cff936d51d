//! The `tls` example's server (`examples::servers::tls`, the code the
//! example runs) on this runtime, against rustls's client (tokio-rustls on
//! a tokio runtime in another thread) that trusts the certificate the
//! server generated: HTTPS GETs over HTTP/1.1 and HTTP/2 (ALPN), large
//! POST bodies echoed, and TLS garbage, truncated handshakes, silent
//! clients and garbage after the handshake each ending their connection
//! with an error, never a panic or a stuck task, while the server goes on
//! serving.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use examples::servers::tls::{self, Identity};
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use integration_tests::{on_runtime, payload, tokio_rt};
use tokio::io::AsyncWriteExt;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const LIMIT: Duration = Duration::from_secs(120);

/// How long a raw client waits for the server to close.
const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// A fresh self-signed identity, and the certificate as a client gets it:
/// parsed back from the PEM the example writes out for `curl --cacert`.
fn identity() -> (Identity, CertificateDer<'static>) {
    let (identity, pem) = Identity::self_signed().unwrap();
    let cert = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    (identity, cert)
}

/// Serves the example's HTTPS on this runtime while `client` runs on its
/// own thread with the server's address and the certificate to trust;
/// returns the client's result.
async fn with_server<T: Send + 'static>(
    client: impl FnOnce(SocketAddr, CertificateDer<'static>) -> T + Send + 'static,
) -> T {
    let (identity, cert) = identity();
    let config = tls::server_config(identity).unwrap();
    let listener = net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = runtime::spawn(tls::serve(listener, config));
    let out = runtime::spawn_blocking(move || client(addr, cert))
        .await
        .unwrap();
    server.abort();
    out
}

/// A rustls client trusting `cert` only, offering `alpn`.
fn connector(cert: &CertificateDer<'static>, alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let mut config = ClientConfig::builder_with_provider(tls::ring_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

/// A TLS connection to `addr` under the name `name`, offering `alpn`.
async fn connect(
    addr: SocketAddr,
    cert: &CertificateDer<'static>,
    name: &str,
    alpn: &[&[u8]],
) -> TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(name.to_string()).unwrap();
    connector(cert, alpn).connect(name, tcp).await.unwrap()
}

/// An HTTP/1.1 client over TLS.
async fn http1(
    addr: SocketAddr,
    cert: &CertificateDer<'static>,
    name: &str,
) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let tls = connect(addr, cert, name, &[b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// An HTTP/2 client over TLS, chosen by ALPN.
async fn http2(
    addr: SocketAddr,
    cert: &CertificateDer<'static>,
    name: &str,
) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let tls = connect(addr, cert, name, &[b"h2", b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn post(path: &str, body: Bytes) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("host", "localhost")
        .body(Full::new(body))
        .unwrap()
}

#[test]
fn https_get_over_http1_and_http2() {
    on_runtime(LIMIT, || {
        with_server(|addr, cert| {
            tokio_rt().block_on(async move {
                // The certificate names both localhost and 127.0.0.1.
                for name in ["localhost", "127.0.0.1"] {
                    let mut h1 = http1(addr, &cert, name).await;
                    for _ in 0..3 {
                        let res = h1.send_request(get("/")).await.unwrap();
                        assert_eq!(res.status(), StatusCode::OK);
                        let body = res.into_body().collect().await.unwrap().to_bytes();
                        assert_eq!(&body[..], b"Hello over TLS (HTTP/1.1)\n");
                    }
                    let res = h1.send_request(get("/nowhere")).await.unwrap();
                    assert_eq!(res.status(), StatusCode::NOT_FOUND);

                    let mut h2 = http2(addr, &cert, name).await;
                    let res = h2.send_request(get("/")).await.unwrap();
                    assert_eq!(res.status(), StatusCode::OK);
                    assert_eq!(res.version(), hyper::Version::HTTP_2);
                    let body = res.into_body().collect().await.unwrap().to_bytes();
                    assert_eq!(&body[..], b"Hello over TLS (HTTP/2)\n");
                }
            })
        })
    });
}

/// A client that does not trust the certificate refuses the server, and
/// the server survives the aborted handshake.
#[test]
fn an_untrusting_client_refuses_the_certificate() {
    on_runtime(LIMIT, || {
        with_server(|addr, cert| {
            tokio_rt().block_on(async move {
                let (_, other) = identity();
                let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                let name = ServerName::try_from("localhost").unwrap();
                let err = connector(&other, &[b"http/1.1"])
                    .connect(name, tcp)
                    .await
                    .expect_err("a certificate nobody vouches for was accepted");
                assert!(
                    err.to_string().contains("certificate"),
                    "unexpected error: {err}"
                );
                let mut h1 = http1(addr, &cert, "localhost").await;
                let res = h1.send_request(get("/")).await.unwrap();
                assert_eq!(res.status(), StatusCode::OK);
            })
        })
    });
}

#[test]
fn large_posts_are_echoed() {
    const LARGE: usize = 4 << 20;
    on_runtime(LIMIT, || {
        with_server(|addr, cert| {
            tokio_rt().block_on(async move {
                let mut h1 = http1(addr, &cert, "localhost").await;
                for (i, len) in [0, 1, 16 * 1024 + 3, LARGE].into_iter().enumerate() {
                    let body = Bytes::from(payload(i as u64, len));
                    let res = h1.send_request(post("/echo", body.clone())).await.unwrap();
                    assert_eq!(res.status(), StatusCode::OK);
                    let got = res.into_body().collect().await.unwrap().to_bytes();
                    assert!(got == body, "HTTP/1.1 echo of {len} bytes differs");
                }

                // HTTP/2: concurrent streams on one TLS connection.
                let h2 = http2(addr, &cert, "localhost").await;
                let mut tasks = Vec::new();
                for i in 0..16u64 {
                    let mut h2 = h2.clone();
                    tasks.push(tokio::spawn(async move {
                        let len = if i == 0 { LARGE } else { (i as usize) * 65_537 };
                        let body = Bytes::from(payload(100 + i, len));
                        let res = h2.send_request(post("/echo", body.clone())).await.unwrap();
                        assert_eq!(res.status(), StatusCode::OK);
                        let got = res.into_body().collect().await.unwrap().to_bytes();
                        assert!(
                            got == body,
                            "HTTP/2 stream {i}: echo of {len} bytes differs"
                        );
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
            })
        })
    });
}

/// What a misbehaving client does on its connection.
#[derive(Clone, Copy, Debug)]
enum Misbehaviour {
    /// Bytes that are not TLS at all (here: plain HTTP), then waits.
    PlainHttp,
    /// Random bytes, then waits.
    Random,
    /// A handshake record header announcing more than TLS allows.
    OversizedRecord,
    /// The first bytes of a handshake record, then the end of its stream.
    TruncatedHandshake,
    /// Connects and sends nothing (the handshake timeout ends it).
    Silent,
    /// A complete handshake, then raw bytes on the socket where encrypted
    /// records belong.
    GarbageAfterHandshake,
}

/// Plays `garbage` against `addr` and returns once the server has closed
/// the connection (end of stream or a reset); fails if it stays open.
fn misbehave(addr: SocketAddr, cert: CertificateDer<'static>, garbage: Misbehaviour) {
    let raw = match garbage {
        Misbehaviour::PlainHttp => b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
        Misbehaviour::Random => payload(7, 4096),
        Misbehaviour::OversizedRecord => b"\x16\x03\x01\xff\xff\x01\x00\x00\x10".to_vec(),
        Misbehaviour::TruncatedHandshake => {
            b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03".to_vec()
        }
        Misbehaviour::Silent => Vec::new(),
        Misbehaviour::GarbageAfterHandshake => {
            return tokio_rt().block_on(async move {
                let mut tls = connect(addr, &cert, "localhost", &[b"http/1.1"]).await;
                // Past rustls, straight onto the socket: a whole
                // application-data record (header and 64 bytes) that does
                // not decrypt.
                let mut record = b"\x17\x03\x03\x00\x40".to_vec();
                record.extend(payload(9, 64));
                tls.get_mut().0.write_all(&record).await.unwrap();
                let mut rest = Vec::new();
                let closed = tokio::time::timeout(
                    IO_TIMEOUT,
                    tokio::io::AsyncReadExt::read_to_end(tls.get_mut().0, &mut rest),
                )
                .await
                .expect("the connection was not closed");
                match closed {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
                    Err(e) => panic!("the connection was not closed: {e}"),
                }
            });
        }
    };
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(&raw).unwrap();
    if let Misbehaviour::TruncatedHandshake = garbage {
        s.shutdown(Shutdown::Write).unwrap();
    }
    // The server may send an alert first; then the stream ends.
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("{garbage:?}: the connection was not closed: {e}"),
    }
}

/// Each kind of garbage ends its connection's task with an error (the task
/// is awaited, so a stuck one would hang the test into its deadline, and a
/// panicking one fails the join), and the server then serves a good
/// client.
#[test]
fn garbage_ends_the_connection_with_an_error() {
    on_runtime(LIMIT, || async {
        let (identity, cert) = identity();
        let acceptor = TlsAcceptor::from(tls::server_config(identity).unwrap());
        let listener = net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        for garbage in [
            Misbehaviour::PlainHttp,
            Misbehaviour::Random,
            Misbehaviour::OversizedRecord,
            Misbehaviour::TruncatedHandshake,
            Misbehaviour::Silent,
            Misbehaviour::GarbageAfterHandshake,
        ] {
            let cert = cert.clone();
            let client = runtime::spawn_blocking(move || misbehave(addr, cert, garbage));
            let (stream, _) = listener.accept().await.unwrap();
            let conn = runtime::spawn(tls::serve_connection(
                acceptor.clone(),
                stream,
                Duration::from_millis(300),
            ));
            let result = conn.await.expect("the connection task panicked");
            assert!(
                result.is_err(),
                "{garbage:?}: the connection ended without an error"
            );
            client.await.expect("the misbehaving client failed");
        }

        // A good client on the same listener, through the same function.
        let client = runtime::spawn_blocking(move || {
            tokio_rt().block_on(async move {
                let mut h1 = http1(addr, &cert, "localhost").await;
                let res = h1.send_request(get("/")).await.unwrap();
                assert_eq!(res.status(), StatusCode::OK);
                let body = res.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(&body[..], b"Hello over TLS (HTTP/1.1)\n");
            })
        });
        let (stream, _) = listener.accept().await.unwrap();
        let conn = runtime::spawn(tls::serve_connection(
            acceptor,
            stream,
            Duration::from_secs(20),
        ));
        client.await.expect("the good client failed");
        // The client closed its connection: the server's side ends too.
        conn.await
            .expect("the connection task panicked")
            .expect("a clean close is no error");
    });
}
