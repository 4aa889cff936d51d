//! Placeholder (being written).

use std::io;
use std::net::SocketAddr;

/// Serves echo on `addr` until killed.
pub fn run(addr: SocketAddr) -> io::Result<()> {
    let _ = (addr, super::BUF_SIZE);
    Err(io::Error::new(io::ErrorKind::Unsupported, "not written yet"))
}
