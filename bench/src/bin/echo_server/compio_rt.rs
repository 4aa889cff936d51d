//! The echo server on compio, with its io_uring driver.
//!
//! One thread: compio's `Runtime` with its default settings (1024 entries).
//! Only the `io-uring` driver feature is enabled, so there is no epoll
//! fallback; the server checks that the driver really is io_uring and fails
//! otherwise. The listener is made with socket2 (SO_REUSEADDR, backlog 4096;
//! compio's own `bind` listens with a backlog of 128 and no way to change it)
//! and handed over with `TcpListener::from_std`. I/O is compio's owned-buffer
//! API (`compio::io::AsyncRead` / `AsyncWriteExt`), the path its examples and
//! benchmarks use: each connection owns one 16 KiB `Vec`, `read` fills it,
//! `write_all` gives it back. TCP_NODELAY is set on every accepted socket.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use compio::driver::DriverType;
use compio::io::{AsyncRead, AsyncWriteExt};
use compio::net::{TcpListener, TcpStream};
use compio::BufResult;

/// Serves echo on `addr` until killed.
pub(crate) fn run(addr: SocketAddr) -> io::Result<()> {
    let listener = bench::listen(addr)?;
    let rt = compio::runtime::Runtime::new()?;
    if rt.driver_type() != DriverType::IoUring {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "compio chose the {:?} driver, not io_uring",
                rt.driver_type()
            ),
        ));
    }
    rt.block_on(async move {
        let listener = TcpListener::from_std(listener)?;
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    compio::runtime::spawn(echo(stream)).detach();
                }
                Err(e) => {
                    // Out of descriptors, say: back off instead of spinning.
                    // The `time` feature (compio's timers) is not enabled, so
                    // the pause runs on compio's blocking pool.
                    eprintln!("echo_server compio: accept failed: {e}");
                    let pause = || std::thread::sleep(Duration::from_millis(10));
                    let _ = compio::runtime::spawn_blocking(pause).await;
                }
            }
        }
    })
}

/// Echoes one connection until the peer closes it or an error occurs.
async fn echo(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(super::BUF_SIZE);
    loop {
        // A `Vec` is read into from its start, over its whole capacity; the
        // read raises its length to the bytes received (it was cleared).
        let BufResult(res, b) = stream.read(buf).await;
        buf = b;
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        // `write_all` writes the vector's initialized bytes: what was read.
        let BufResult(res, b) = stream.write_all(buf).await;
        buf = b;
        if res.is_err() {
            return;
        }
        buf.clear();
    }
}
