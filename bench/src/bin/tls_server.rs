//! A TLS server for the suite's `ecosystem` scenario: tokio-rustls (the
//! `ring` provider) on this runtime (`--rt ours`: `net::TcpStream` through
//! net's `tokio-io` feature, one `runtime::spawn`ed task per connection) or
//! on a tokio `current_thread` runtime (`--rt tokio`), the same code above
//! the stream on both.
//!
//! The certificate is a fresh self-signed one (rcgen, ECDSA P-256, as the
//! `tls` example makes it); rustls's session tickets and session cache
//! are off, so that every connection is a full handshake.
//!
//! After the handshake the client sends commands, one byte each:
//!
//! - `h`: the server answers one byte `k` and closes the connection (with
//!   TLS `close_notify`): one handshake, measured by `eco_load handshakes`.
//! - `d` and a little-endian `u64` length: the server sends that many bytes
//!   (64 KiB writes of a fixed pattern), then waits for the next command:
//!   bulk throughput over one connection, measured by `eco_load bulk`.
//!
//! End of stream ends the connection.
//!
//! ```text
//! target/release/tls_server 127.0.0.1:9443 --rt ours|tokio
//! ```

use std::process::ExitCode;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::NoServerSessionStorage;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// The size of one write of a download.
const CHUNK: usize = 64 << 10;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut addr, mut rt) = (None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--rt" => rt = it.next().cloned(),
            other if addr.is_none() && !other.starts_with("--") => addr = Some(other.to_owned()),
            _ => {
                addr = None;
                break;
            }
        }
    }
    let (Some(addr), Some(rt)) = (addr, rt.filter(|r| r == "ours" || r == "tokio")) else {
        eprintln!("usage: tls_server <addr> --rt ours|tokio");
        return ExitCode::from(2);
    };
    if let Err(e) = bench::raise_nofile_limit() {
        eprintln!("tls_server: cannot raise the descriptor limit (continuing): {e}");
    }
    let config = match config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tls_server: cannot make the TLS configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match bench::listen(&addr).and_then(|l| {
        l.set_nonblocking(true)?;
        Ok(l)
    }) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tls_server: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let acceptor = TlsAcceptor::from(config);
    if rt == "ours" {
        serve_ours(listener, acceptor)
    } else {
        serve_tokio(listener, acceptor)
    }
}

/// rustls's server settings: a self-signed certificate, the ring
/// provider, no resumption (neither tickets nor a session cache).
fn config() -> Result<Arc<ServerConfig>, Box<dyn std::error::Error>> {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])?;
    let key = PrivateKeyDer::Pkcs8(signing_key.serialize_der().into());
    let certs: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
    // rustls deprecated the ring provider (no post-quantum key exchange);
    // it is the one the `tls` example uses.
    #[allow(deprecated)]
    let provider: Arc<CryptoProvider> = Arc::new(ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// One connection after the handshake: the commands of the module
/// documentation until end of stream.
async fn session<S: AsyncRead + AsyncWrite + Unpin>(mut tls: S) -> std::io::Result<()> {
    let chunk = vec![0x5a_u8; CHUNK];
    let mut cmd = [0u8; 1];
    loop {
        if tls.read(&mut cmd).await? == 0 {
            return Ok(());
        }
        match cmd[0] {
            b'h' => {
                tls.write_all(b"k").await?;
                tls.shutdown().await?;
                return Ok(());
            }
            b'd' => {
                let mut len = [0u8; 8];
                tls.read_exact(&mut len).await?;
                let mut left = u64::from_le_bytes(len);
                while left > 0 {
                    let n = left.min(CHUNK as u64) as usize;
                    tls.write_all(&chunk[..n]).await?;
                    left -= n as u64;
                }
                tls.flush().await?;
            }
            other => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("unknown command byte {other:#04x}"),
                ))
            }
        }
    }
}

/// The server on this runtime.
fn serve_ours(listener: std::net::TcpListener, acceptor: TlsAcceptor) -> ExitCode {
    let rt = match runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tls_server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let listener = net::TcpListener::from_std(listener);
        match listener.local_addr() {
            Ok(local) => println!("tls_server (ours): listening on {local}"),
            Err(_) => println!("tls_server (ours): listening"),
        }
        let mut incoming = listener.incoming();
        while let Some(conn) = incoming.next().await {
            let stream = match conn {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("tls_server: accept failed: {e}");
                    runtime::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let acceptor = acceptor.clone();
            runtime::spawn(async move {
                // A failed handshake or a reset ends that connection only.
                if let Ok(tls) = acceptor.accept(stream).await {
                    let _ = session(tls).await;
                }
            });
        }
        ExitCode::SUCCESS
    })
}

/// The server on tokio's current-thread runtime.
fn serve_tokio(listener: std::net::TcpListener, acceptor: TlsAcceptor) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tls_server: cannot start tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("tls_server: cannot register the listener: {e}");
                return ExitCode::FAILURE;
            }
        };
        match listener.local_addr() {
            Ok(local) => println!("tls_server (tokio): listening on {local}"),
            Err(_) => println!("tls_server (tokio): listening"),
        }
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        if let Ok(tls) = acceptor.accept(stream).await {
                            let _ = session(tls).await;
                        }
                    });
                }
                Err(e) => {
                    eprintln!("tls_server: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    })
}
