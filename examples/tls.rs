//! An HTTPS server with rustls on this runtime: HTTP/1.1, and HTTP/2 when
//! the client asks for it by ALPN.
//!
//! ```text
//! cargo run --release -p examples --example tls -- 127.0.0.1:8443 [--cert CERT.pem --key KEY.pem]
//! ```
//!
//! The address is optional (that one is the default). Without `--cert` and
//! `--key` the server makes a self-signed certificate for `localhost` and
//! `127.0.0.1` at start, writes it in PEM to the temporary directory and
//! prints where, for the client to trust:
//!
//! ```text
//! curl --cacert /tmp/tls-example-8443.pem https://localhost:8443/
//! curl --http2 --cacert /tmp/tls-example-8443.pem https://127.0.0.1:8443/
//! curl --cacert /tmp/tls-example-8443.pem --data-binary @file https://localhost:8443/echo
//! ```
//!
//! The server (`examples::servers::tls`, `servers/tls.rs`, which the
//! integration tests run too) is tokio-rustls's `TlsAcceptor` on
//! `net::TcpStream` (net's `tokio-io` feature), bridged to hyper with
//! hyper-util's `TokioIo`; rustls uses the `ring` crypto provider.

use std::io;
use std::path::PathBuf;

use examples::servers::tls::{self, Identity};

/// The command line: `[ADDR] [--cert PEM --key PEM]`.
struct Args {
    addr: String,
    cert_and_key: Option<(PathBuf, PathBuf)>,
}

fn usage(problem: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{problem}\nusage: tls [ADDR] [--cert CERT.pem --key KEY.pem]"),
    )
}

fn parse_args() -> io::Result<Args> {
    let mut addr = None;
    let (mut cert, mut key) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--cert" => cert = Some(args.next().ok_or_else(|| usage("--cert needs a file"))?),
            "--key" => key = Some(args.next().ok_or_else(|| usage("--key needs a file"))?),
            _ if arg.starts_with("--") => return Err(usage(&format!("unknown option {arg}"))),
            _ if addr.is_none() => addr = Some(arg),
            _ => return Err(usage(&format!("unexpected argument {arg}"))),
        }
    }
    let cert_and_key = match (cert, key) {
        (Some(c), Some(k)) => Some((c.into(), k.into())),
        (None, None) => None,
        _ => return Err(usage("--cert and --key go together")),
    };
    Ok(Args {
        addr: addr.unwrap_or_else(|| "127.0.0.1:8443".to_string()),
        cert_and_key,
    })
}

#[runtime::main]
async fn main() -> io::Result<()> {
    let args = parse_args()?;
    let listener = net::TcpListener::bind(args.addr.as_str())?;
    let local = listener.local_addr()?;
    let (identity, written) = match args.cert_and_key {
        Some((cert, key)) => (Identity::from_pem_files(&cert, &key)?, None),
        None => {
            let (identity, pem) = Identity::self_signed().map_err(io::Error::other)?;
            let path = std::env::temp_dir().join(format!("tls-example-{}.pem", local.port()));
            fs::write(&path, pem).await?;
            (identity, Some(path))
        }
    };
    let config = tls::server_config(identity).map_err(io::Error::other)?;
    match written {
        Some(path) => println!(
            "tls: listening on https://{local} (self-signed certificate for localhost and 127.0.0.1 in {})",
            path.display()
        ),
        None => println!("tls: listening on https://{local}"),
    }
    tls::serve(listener, config).await;
    Ok(())
}
