//! The load generator of the suite's `ecosystem` scenario, one mode per
//! measurement; each prints one `RESULT k=v ...` line.
//!
//! ```text
//! eco_load handshakes --addr A [--secs S] [--warmup W] [--conc C] [--rate R]
//! eco_load bulk --addr A [--secs S] [--size BYTES]
//! eco_load idle --addr A --conns N [--request]
//! ```
//!
//! - `handshakes`: `C` tasks (default 8) on a tokio `current_thread`
//!   runtime, each opening a new TCP connection, doing a full TLS handshake
//!   (tokio-rustls, the ring provider, resumption off), sending `h`,
//!   reading the server's one-byte answer and its close: `tls_server`'s
//!   protocol. With `--rate R` the connections start on a schedule of `R`
//!   per second in total (a task takes the next free slot; if every task
//!   is busy the slot starts late), else as fast as the tasks go. Counts
//!   the handshakes completed in the `S` seconds after a `W`-second
//!   warm-up; latency is from the TCP connect to the server's close.
//!   `RESULT handshakes= completed= secs= rate= errors= p50_us= p99_us=
//!   mean_us= client_cpu=`, `completed` counting every handshake of the
//!   process (warm-up and the ones that ended after the window included).
//! - `bulk`: one TLS connection, then downloads of `BYTES` (default 64
//!   MiB) one after another until `S` seconds have passed (at least one),
//!   after a 4 MiB warm-up download. `RESULT bytes= total_bytes= secs=
//!   mb_per_s= client_cpu=` (MB = 10^6 bytes; `total_bytes` counts the
//!   warm-up too).
//! - `idle`: `N` plain TCP connections (blocking `std`), each sending one
//!   `GET /` and reading its answer first with `--request`; then prints
//!   `READY conns=N` and holds them until it is killed.
//!
//! The client offers one key exchange, X25519 (the one browsers and curl
//! lead with; rustls's ring provider, by default, leads with P-384). It
//! does not verify the server's certificate or its handshake signature (the server's work is what is measured; `tls_server`'s
//! certificate is self-signed). `client_cpu` is this process's CPU time
//! (getrusage) over the measured window divided by the window's length:
//! 1.0 = one core busy, the load generator saturated.

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::Resumption;
use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio_rustls::TlsConnector;

const USAGE: &str =
    "usage: eco_load handshakes --addr A [--secs S] [--warmup W] [--conc C] [--rate R]
       eco_load bulk --addr A [--secs S] [--size BYTES]
       eco_load idle --addr A --conns N [--request]";

/// The command line.
struct Args {
    mode: String,
    addr: SocketAddr,
    secs: f64,
    warmup: f64,
    conc: usize,
    rate: Option<f64>,
    size: u64,
    conns: usize,
    request: bool,
}

fn parse() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mode = it.next().ok_or("no mode")?;
    if !["handshakes", "bulk", "idle"].contains(&mode.as_str()) {
        return Err(format!("unknown mode {mode:?}"));
    }
    let mut a = Args {
        mode,
        addr: ([127, 0, 0, 1], 0).into(),
        secs: 3.0,
        warmup: 0.5,
        conc: 8,
        rate: None,
        size: 64 << 20,
        conns: 0,
        request: false,
    };
    let mut addr = None;
    while let Some(flag) = it.next() {
        if flag == "--request" {
            a.request = true;
            continue;
        }
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = format!("bad value {v:?} for {flag}");
        match flag.as_str() {
            "--addr" => addr = Some(v.parse().map_err(|_| format!("bad address {v:?}"))?),
            "--secs" => a.secs = v.parse().map_err(|_| bad.clone())?,
            "--warmup" => a.warmup = v.parse().map_err(|_| bad.clone())?,
            "--conc" => a.conc = v.parse().map_err(|_| bad.clone())?,
            "--rate" => a.rate = Some(v.parse().map_err(|_| bad.clone())?),
            "--size" => a.size = v.parse().map_err(|_| bad.clone())?,
            "--conns" => a.conns = v.parse().map_err(|_| bad.clone())?,
            _ => return Err(format!("unknown flag {flag:?}")),
        }
    }
    a.addr = addr.ok_or("--addr is required")?;
    if a.conc == 0 || a.secs <= 0.0 || a.size == 0 || a.rate.is_some_and(|r| r <= 0.0) {
        return Err("--conc, --secs, --size and --rate must be positive".into());
    }
    Ok(a)
}

fn main() -> ExitCode {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("eco_load: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = bench::raise_nofile_limit() {
        eprintln!("eco_load: cannot raise the descriptor limit (continuing): {e}");
    }
    let result = if a.mode == "idle" {
        idle(&a)
    } else {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("eco_load: cannot start tokio: {e}");
                return ExitCode::FAILURE;
            }
        };
        let connector = TlsConnector::from(client_config());
        if a.mode == "handshakes" {
            rt.block_on(tokio::task::LocalSet::new().run_until(handshakes(&a, connector)))
        } else {
            rt.block_on(bulk(&a, connector))
        }
    };
    match result {
        Ok(line) => {
            println!("RESULT {line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("eco_load {}: {e}", a.mode);
            ExitCode::FAILURE
        }
    }
}

/// Accepts any certificate and handshake signature: see the module
/// documentation.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, tokio_rustls::rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The client's TLS settings: the ring provider, no resumption, no
/// certificate verification.
fn client_config() -> Arc<ClientConfig> {
    // The ring provider is deprecated by rustls (no post-quantum key
    // exchange); the servers use it too.
    #[allow(deprecated)]
    let mut provider = ring::default_provider();
    // Offer X25519 only, as browsers and curl do first: the ring provider
    // would otherwise open with P-384, which ring computes with generic
    // big-number code, several times slower.
    provider.kx_groups = vec![ring::kx_group::X25519];
    let provider = Arc::new(provider);
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    Arc::new(config)
}

fn server_name() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("a valid DNS name")
}

/// One handshake and `h` exchange; returns when the server has closed.
async fn one_handshake(addr: SocketAddr, connector: &TlsConnector) -> std::io::Result<()> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut tls = connector.connect(server_name(), tcp).await?;
    tls.write_all(b"h").await?;
    tls.flush().await?;
    let mut b = [0u8; 1];
    tls.read_exact(&mut b).await?;
    if b[0] != b'k' {
        return Err(std::io::Error::other("unexpected answer"));
    }
    // The server closes next (close_notify, then FIN): wait for it, so
    // that its side of the connection is done when this one counts.
    let mut rest = [0u8; 64];
    while let Ok(n) = tls.read(&mut rest).await {
        if n == 0 {
            break;
        }
    }
    Ok(())
}

/// The 50th and 99th percentiles and the mean of `v` (µs).
fn percentiles(mut v: Vec<u64>) -> (u64, u64, f64) {
    if v.is_empty() {
        return (0, 0, 0.0);
    }
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    let mean = v.iter().sum::<u64>() as f64 / v.len() as f64;
    (at(0.50), at(0.99), mean)
}

async fn handshakes(a: &Args, connector: TlsConnector) -> Result<String, String> {
    let start = Instant::now();
    let window = start + Duration::from_secs_f64(a.warmup);
    let end = window + Duration::from_secs_f64(a.secs);
    let next_slot = Rc::new(Cell::new(0u64));
    let lat = Rc::new(RefCell::new(Vec::<u64>::new()));
    let errors = Rc::new(Cell::new(0u64));
    let completed = Rc::new(Cell::new(0u64));
    let first_error = Rc::new(RefCell::new(None::<String>));
    let cpu_at_window = Rc::new(Cell::new(f64::NAN));
    let mut tasks = Vec::new();
    for _ in 0..a.conc {
        let (next_slot, lat, errors, completed, first_error, cpu_at_window) = (
            next_slot.clone(),
            lat.clone(),
            errors.clone(),
            completed.clone(),
            first_error.clone(),
            cpu_at_window.clone(),
        );
        let (connector, addr, rate) = (connector.clone(), a.addr, a.rate);
        tasks.push(tokio::task::spawn_local(async move {
            loop {
                if let Some(rate) = rate {
                    let slot = next_slot.get();
                    next_slot.set(slot + 1);
                    let at = start + Duration::from_secs_f64(slot as f64 / rate);
                    if at >= end {
                        break;
                    }
                    tokio::time::sleep_until(at.into()).await;
                } else if Instant::now() >= end {
                    break;
                }
                if cpu_at_window.get().is_nan() && Instant::now() >= window {
                    cpu_at_window.set(bench::cpu_secs(libc::RUSAGE_SELF));
                }
                let t0 = Instant::now();
                match one_handshake(addr, &connector).await {
                    Ok(()) => {
                        completed.set(completed.get() + 1);
                        let done = Instant::now();
                        if t0 >= window && done <= end {
                            lat.borrow_mut().push((done - t0).as_micros() as u64);
                        }
                    }
                    Err(e) => {
                        errors.set(errors.get() + 1);
                        first_error.borrow_mut().get_or_insert(e.to_string());
                        // Out of ports or descriptors, say: do not spin.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let cpu = bench::cpu_secs(libc::RUSAGE_SELF) - cpu_at_window.get();
    let lat = std::mem::take(&mut *lat.borrow_mut());
    let n = lat.len();
    if n == 0 {
        return Err(format!(
            "no handshake completed ({} errors{})",
            errors.get(),
            first_error
                .borrow()
                .as_ref()
                .map(|e| format!(", first: {e}"))
                .unwrap_or_default()
        ));
    }
    let (p50, p99, mean) = percentiles(lat);
    Ok(format!(
        "handshakes={n} completed={} secs={:.3} rate={:.1} errors={} p50_us={p50} p99_us={p99} mean_us={mean:.0} client_cpu={:.3}",
        completed.get(),
        a.secs,
        n as f64 / a.secs,
        errors.get(),
        cpu / a.secs
    ))
}

async fn bulk(a: &Args, connector: TlsConnector) -> Result<String, String> {
    let tcp = tokio::net::TcpStream::connect(a.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut tls = connector
        .connect(server_name(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let mut buf = vec![0u8; 256 << 10];
    download(&mut tls, &mut buf, WARM_BYTES).await?;
    let cpu0 = bench::cpu_secs(libc::RUSAGE_SELF);
    let t0 = Instant::now();
    let mut bytes = 0u64;
    while bytes == 0 || t0.elapsed().as_secs_f64() < a.secs {
        download(&mut tls, &mut buf, a.size).await?;
        bytes += a.size;
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = bench::cpu_secs(libc::RUSAGE_SELF) - cpu0;
    Ok(format!(
        "bytes={bytes} total_bytes={} secs={secs:.3} mb_per_s={:.1} client_cpu={:.3}",
        bytes + WARM_BYTES,
        bytes as f64 / secs / 1e6,
        cpu / secs
    ))
}

/// The warm-up download of `bulk`.
const WARM_BYTES: u64 = 4 << 20;

/// Asks for `len` bytes and reads them.
async fn download<S>(tls: &mut S, buf: &mut [u8], len: u64) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut cmd = [0u8; 9];
    cmd[0] = b'd';
    cmd[1..].copy_from_slice(&len.to_le_bytes());
    tls.write_all(&cmd).await.map_err(|e| e.to_string())?;
    tls.flush().await.map_err(|e| e.to_string())?;
    let mut left = len;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = tls
            .read(&mut buf[..want])
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection mid-download".into());
        }
        left -= n as u64;
    }
    Ok(())
}

/// Opens the idle connections, says so, and holds them until killed.
fn idle(a: &Args) -> Result<String, String> {
    if a.conns == 0 {
        return Err("--conns must be positive".into());
    }
    let mut conns = Vec::with_capacity(a.conns);
    let mut buf = [0u8; 1024];
    for i in 0..a.conns {
        let mut c = std::net::TcpStream::connect(a.addr)
            .map_err(|e| format!("connection {i}: connect: {e}"))?;
        if a.request {
            c.set_read_timeout(Some(Duration::from_secs(10)))
                .map_err(|e| e.to_string())?;
            c.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .map_err(|e| format!("connection {i}: write: {e}"))?;
            let mut got = Vec::new();
            while !got.ends_with(b"Hello, World!") {
                let n = c
                    .read(&mut buf)
                    .map_err(|e| format!("connection {i}: read: {e}"))?;
                if n == 0 {
                    return Err(format!("connection {i}: closed by the server"));
                }
                got.extend_from_slice(&buf[..n]);
            }
        }
        conns.push(c);
    }
    println!("READY conns={}", conns.len());
    let _ = std::io::stdout().flush();
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
