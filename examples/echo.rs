//! A TCP echo server: every connection gets its bytes back.
//!
//! `cargo run --release -p examples --example echo -- 127.0.0.1:7000`
//! (the address is optional; that one is the default).

use net::TcpListener;

#[runtime::main]
async fn main() -> std::io::Result<()> {
    let addr = examples::arg_or("127.0.0.1:7000");
    let listener = TcpListener::bind(addr.as_str())?;
    println!("echo: listening on {}", listener.local_addr()?);
    let mut incoming = listener.incoming();
    while let Some(conn) = incoming.next().await {
        let stream = match conn {
            Ok(stream) => stream,
            Err(e) => {
                // Out of descriptors and the like: the listener backs off
                // and keeps going.
                eprintln!("echo: accept failed: {e}");
                continue;
            }
        };
        runtime::spawn(async move {
            let mut buf = Vec::with_capacity(16 * 1024);
            loop {
                let (res, b) = stream.read(buf).await;
                match res {
                    Ok(n) if n > 0 => {}
                    _ => return,
                }
                let (res, b) = stream.write_all(b).await;
                if res.is_err() {
                    return;
                }
                buf = b;
                buf.clear();
            }
        });
    }
    Ok(())
}
