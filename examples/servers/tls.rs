//! The `tls` example's server: HTTPS (HTTP/1.1, and HTTP/2 chosen by ALPN)
//! with rustls on this runtime.
//!
//! The layers of a connection, bottom up: `net::TcpStream`, which is
//! tokio's `AsyncRead`/`AsyncWrite` (net's `tokio-io` feature);
//! tokio-rustls's server stream over it ([`TlsAcceptor`]); hyper-util's
//! [`TokioIo`], which turns tokio's traits into hyper's; hyper-util's
//! `auto` connection builder with [`runtime::hyper::Executor`] and
//! [`runtime::hyper::Timer`]. rustls uses the `ring` crypto provider.
//!
//! Routes: `GET /` answers `Hello over TLS (HTTP/1.1)` (or `HTTP/2`),
//! `POST /echo` answers the request body, anything else is `404`.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::TokioIo;
use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// How long a client has to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Any error of one connection.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A certificate chain and its private key.
#[derive(Debug)]
pub struct Identity {
    /// The chain, the server's own certificate first.
    pub certs: Vec<CertificateDer<'static>>,
    /// The key of the first certificate.
    pub key: PrivateKeyDer<'static>,
}

impl Identity {
    /// A fresh self-signed certificate for `localhost` and `127.0.0.1`,
    /// with the certificate in PEM (what a client is told to trust, e.g.
    /// `curl --cacert`).
    pub fn self_signed() -> Result<(Identity, String), rcgen::Error> {
        let rcgen::CertifiedKey { cert, signing_key } = rcgen::generate_simple_self_signed(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ])?;
        let identity = Identity {
            certs: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(signing_key.serialize_der().into()),
        };
        Ok((identity, cert.pem()))
    }

    /// The certificate chain in the PEM file `cert` and the first private
    /// key in the PEM file `key`.
    pub fn from_pem_files(cert: &Path, key: &Path) -> io::Result<Identity> {
        let bad = |what: &Path, e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", what.display()),
            )
        };
        let certs = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| bad(cert, e))?;
        if certs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: no certificate in the file", cert.display()),
            ));
        }
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e))?;
        Ok(Identity { certs, key })
    }
}

/// rustls's crypto provider backed by the `ring` crate.
///
/// rustls 0.23.48 deprecated it ("no support for post-quantum
/// algorithms": its key exchanges are X25519 and the NIST curves, without
/// the hybrid X25519MLKEM768 of the aws-lc-rs provider). It is still a
/// supported provider, and it is chosen here because its build (a small
/// C and assembly library) is much lighter than aws-lc-rs's.
#[allow(deprecated)]
pub fn ring_provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// rustls's server settings for `identity`, on the ring provider, offering
/// HTTP/2 and HTTP/1.1 by ALPN.
pub fn server_config(identity: Identity) -> Result<Arc<ServerConfig>, tokio_rustls::rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(ring_provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(identity.certs, identity.key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Answers one request.
async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let response = match (req.method(), req.uri().path()) {
        (&Method::GET, "/") => {
            let version = match req.version() {
                Version::HTTP_2 => "HTTP/2",
                _ => "HTTP/1.1",
            };
            Response::builder()
                .header("content-type", "text/plain")
                .body(Full::new(Bytes::from(format!(
                    "Hello over TLS ({version})\n"
                ))))
        }
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

/// Serves one accepted connection: the TLS handshake (at most
/// `handshake_timeout`; [`serve`] gives [`HANDSHAKE_TIMEOUT`]), then HTTP
/// until either side closes. An error (a failed or timed-out handshake,
/// TLS or HTTP garbage, a reset) ends the connection: the stream is
/// dropped, which closes it.
pub async fn serve_connection(
    acceptor: TlsAcceptor,
    stream: net::TcpStream,
    handshake_timeout: Duration,
) -> Result<(), BoxError> {
    let _ = stream.set_nodelay(true);
    let tls = runtime::time::timeout(handshake_timeout, acceptor.accept(stream))
        .await
        .map_err(|_| "TLS handshake timed out")??;
    let builder = crate::hyper_builder();
    builder
        .serve_connection(TokioIo::new(tls), service_fn(handle))
        .await
}

/// Serves every connection `listener` accepts with `config`, each on its
/// own task of the current runtime; never returns.
pub async fn serve(listener: net::TcpListener, config: Arc<ServerConfig>) {
    let acceptor = TlsAcceptor::from(config);
    loop {
        let (stream, peer) = crate::accept(&listener, "tls").await;
        let acceptor = acceptor.clone();
        runtime::spawn(async move {
            if let Err(e) = serve_connection(acceptor, stream, HANDSHAKE_TIMEOUT).await {
                eprintln!("tls: connection from {peer} ended: {e}");
            }
        });
    }
}
