//! Sockets on the io_uring runtime: TCP, UDP and Unix domain.
//!
//! Every data-path call (accept, connect, read, write, send, recv, ...) is
//! an io_uring operation submitted through [`runtime::op`]; socket setup
//! (creating, binding, listening, options) uses plain system calls, which
//! never block. Buffers are taken by value and handed back in a
//! [`runtime::BufResult`], because the kernel owns them while an operation
//! is in flight.
//!
//! ```no_run
//! use net::TcpListener;
//!
//! #[runtime::main]
//! async fn main() -> std::io::Result<()> {
//!     let listener = TcpListener::bind("127.0.0.1:7000")?;
//!     loop {
//!         let (stream, _) = listener.accept().await?;
//!         runtime::spawn(async move {
//!             let mut buf = Vec::with_capacity(4096);
//!             loop {
//!                 let (res, b) = stream.read(buf).await;
//!                 if !matches!(res, Ok(n) if n > 0) {
//!                     return;
//!                 }
//!                 let (res, b) = stream.write_all(b).await;
//!                 if res.is_err() {
//!                     return;
//!                 }
//!                 buf = b;
//!                 buf.clear();
//!             }
//!         });
//!     }
//! }
//! ```
//!
//! Streams can also name their socket by a slot of the ring's table of
//! registered files instead of by descriptor number; see [`direct`] for
//! the two forms (registered and direct) and what each keeps.
//!
//! Closing is safe: a socket's descriptor is closed when the socket *and*
//! every operation still in flight on it are gone, so its number is never
//! reused while the kernel may still use it. Writes never raise `SIGPIPE`
//! (they are sends with `MSG_NOSIGNAL`).
//!
//! # On the epoll driver
//!
//! Where io_uring is refused the runtime runs on epoll
//! (`runtime::DriverKind::Epoll`, see `runtime::features().driver`). Every
//! method above works there with the same results and errors, except the
//! io_uring-only facilities: `recv_multishot` and `recv_from_ring`
//! (provided-buffer rings), `register` and `into_direct` (registered
//! files, direct descriptors) answer `ErrorKind::Unsupported`;
//! `accept_direct` and `incoming_direct` hand out ordinary descriptors (as
//! on kernels without direct descriptors); `send_queue` sends with
//! `sendmsg`; `send_zc` and `write_all_zc` are plain sends; a
//! `FixedBufPool` is never registered, so `read_fixed`, `write_fixed` and
//! `send_zc_fixed` are plain receives and sends; `read_timeout`'s deadline
//! is a runtime timer.
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod addr;
pub use addr::ToSocketAddrs;
mod backoff;
pub mod direct;
mod listener;
mod poll_io;
mod recv_multi;
mod send_bundle;
mod send_zc;
mod stream;
mod tcp;
mod timeout;
mod udp;
mod unix;

pub use direct::DirectStream;
pub use listener::{Incoming, IncomingDirect, UnixIncoming};
pub use recv_multi::RecvMulti;
pub use send_bundle::SendQueue;
pub use tcp::{TcpListener, TcpStream};
pub use udp::UdpSocket;
pub use unix::{UnixListener, UnixStream};
