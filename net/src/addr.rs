//! Socket addresses: resolving without blocking the ring, and converting to
//! and from the kernel's representation.

use std::io;
use std::net::SocketAddr;

use runtime::op::SockAddrBuf;
use socket2::{SockAddr, SockAddrStorage};

/// Anything that names socket addresses: the same types as
/// [`std::net::ToSocketAddrs`] (`SocketAddr`, `"127.0.0.1:80"`,
/// `("localhost", 80)`, `(IpAddr, u16)`, `&[SocketAddr]`, ...).
///
/// It is a trait of its own so that names needing a lookup (DNS,
/// `/etc/hosts`) can be resolved on the blocking thread pool instead of on
/// the ring's thread: async functions taking it ([`TcpStream::connect`],
/// [`UdpSocket::connect`](crate::UdpSocket::connect)) never block the ring.
/// Numeric addresses never need a lookup.
///
/// [`TcpStream::connect`]: crate::TcpStream::connect
pub trait ToSocketAddrs: sealed::Sealed {}

pub(crate) mod sealed {
    use std::io;
    use std::net::SocketAddr;

    /// What resolving an address takes.
    #[derive(Debug)]
    pub enum Resolve {
        /// Resolved without a lookup.
        Ready(io::Result<Vec<SocketAddr>>),
        /// A `host:port` string that needs a lookup.
        Lookup(String),
    }

    pub trait Sealed {
        fn resolve(&self) -> Resolve;
    }
}

use sealed::{Resolve, Sealed};

macro_rules! direct {
    ($($t:ty),*) => {$(
        impl ToSocketAddrs for $t {}
        impl Sealed for $t {
            fn resolve(&self) -> Resolve {
                Resolve::Ready(std::net::ToSocketAddrs::to_socket_addrs(self).map(Iterator::collect))
            }
        }
    )*};
}
direct!(
    SocketAddr,
    std::net::SocketAddrV4,
    std::net::SocketAddrV6,
    (std::net::IpAddr, u16),
    (std::net::Ipv4Addr, u16),
    (std::net::Ipv6Addr, u16)
);

impl ToSocketAddrs for &[SocketAddr] {}
impl Sealed for &[SocketAddr] {
    fn resolve(&self) -> Resolve {
        Resolve::Ready(Ok(self.to_vec()))
    }
}

impl ToSocketAddrs for str {}
impl Sealed for str {
    fn resolve(&self) -> Resolve {
        match self.parse::<SocketAddr>() {
            Ok(a) => Resolve::Ready(Ok(vec![a])),
            Err(_) => Resolve::Lookup(self.to_string()),
        }
    }
}

impl ToSocketAddrs for String {}
impl Sealed for String {
    fn resolve(&self) -> Resolve {
        self.as_str().resolve()
    }
}

impl ToSocketAddrs for (&str, u16) {}
impl Sealed for (&str, u16) {
    fn resolve(&self) -> Resolve {
        let (host, port) = *self;
        match host.parse::<std::net::IpAddr>() {
            Ok(ip) => Resolve::Ready(Ok(vec![SocketAddr::new(ip, port)])),
            Err(_) => Resolve::Lookup(format!("{host}:{port}")),
        }
    }
}

impl ToSocketAddrs for (String, u16) {}
impl Sealed for (String, u16) {
    fn resolve(&self) -> Resolve {
        (self.0.as_str(), self.1).resolve()
    }
}

impl<T: ToSocketAddrs + ?Sized> ToSocketAddrs for &T {}
impl<T: Sealed + ?Sized> Sealed for &T {
    fn resolve(&self) -> Resolve {
        (**self).resolve()
    }
}

/// Resolves without blocking the ring: lookups run on the blocking pool.
pub(crate) async fn resolve<A: ToSocketAddrs>(addr: A) -> io::Result<Vec<SocketAddr>> {
    match addr.resolve() {
        Resolve::Ready(res) => res,
        Resolve::Lookup(text) => runtime::spawn_blocking(move || {
            std::net::ToSocketAddrs::to_socket_addrs(&text).map(Iterator::collect)
        })
        .await
        .map_err(|e| io::Error::other(format!("address lookup failed: {e}")))?,
    }
}

/// Resolves on the calling thread (for synchronous `bind`s; binding to a
/// name that needs a lookup is rare).
pub(crate) fn resolve_now<A: ToSocketAddrs>(addr: A) -> io::Result<Vec<SocketAddr>> {
    match addr.resolve() {
        Resolve::Ready(res) => res,
        Resolve::Lookup(text) => {
            std::net::ToSocketAddrs::to_socket_addrs(&text).map(Iterator::collect)
        }
    }
}

/// Tries each address in turn with `f` (synchronously), returning the
/// first success or the last error.
pub(crate) fn each_addr_now<T>(
    addrs: Vec<SocketAddr>,
    mut f: impl FnMut(SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last = None;
    for addr in addrs {
        match f(addr) {
            Ok(v) => return Ok(v),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(no_addresses))
}

fn no_addresses() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "the address resolved to no socket addresses",
    )
}

/// Tries each address in turn with `f`, returning the first success or the
/// last error.
pub(crate) async fn each_addr<T, F, Fut>(addrs: Vec<SocketAddr>, mut f: F) -> io::Result<T>
where
    F: FnMut(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = io::Result<T>>,
{
    let mut last = None;
    for addr in addrs {
        match f(addr).await {
            Ok(v) => return Ok(v),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(no_addresses))
}

/// The address the kernel wrote into `buf` (an accept, a receive), as
/// socket2 holds it.
pub(crate) fn to_sock_addr(buf: &SockAddrBuf) -> SockAddr {
    let mut storage = SockAddrStorage::zeroed();
    // SAFETY: `view_as` wants one of the platform's sockaddr types, and
    // `sockaddr_storage` is the largest of them; `SockAddr::new` wants the
    // length to fit the address in the storage, and `buf.len()` is at most
    // the size of a `sockaddr_storage` (SockAddrBuf clamps it, and the
    // kernel writes no more than it was offered).
    unsafe {
        *storage.view_as::<libc::sockaddr_storage>() = *buf.storage();
        SockAddr::new(storage, buf.len())
    }
}

/// The address the kernel wrote into `buf`, as an IP socket address.
pub(crate) fn to_socket_addr(buf: &SockAddrBuf) -> io::Result<SocketAddr> {
    to_sock_addr(buf).as_socket().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "the kernel returned a non-IP address for an IP socket",
        )
    })
}

/// A Unix domain socket address out of socket2's: a path, an abstract
/// name, or unnamed (an unbound peer).
pub(crate) fn unix_addr(addr: &SockAddr) -> io::Result<std::os::unix::net::SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::SocketAddr as UnixAddr;

    if let Some(path) = addr.as_pathname() {
        UnixAddr::from_pathname(path)
    } else if let Some(name) = addr.as_abstract_namespace() {
        UnixAddr::from_abstract_name(name)
    } else if addr.is_unnamed() {
        // The empty path is the unnamed address (the family alone).
        UnixAddr::from_pathname("")
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a Unix domain socket address",
        ))
    }
}

/// An address for the kernel to read (a connect, a send to an address).
pub(crate) fn to_sock_addr_buf(addr: &SockAddr) -> SockAddrBuf {
    let mut storage = addr.clone().as_storage();
    // SAFETY: `view_as` wants one of the platform's sockaddr types, and
    // `sockaddr_storage` is (socket2's storage is a transparent wrapper of
    // it, so the view covers it exactly).
    let storage = *unsafe { storage.view_as::<libc::sockaddr_storage>() };
    SockAddrBuf::from_storage(storage, addr.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::linux::net::SocketAddrExt;

    #[test]
    fn unix_addresses_keep_their_kind() {
        let path = unix_addr(&SockAddr::unix("/tmp/some.sock").unwrap()).unwrap();
        assert_eq!(
            path.as_pathname(),
            Some(std::path::Path::new("/tmp/some.sock"))
        );

        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let unnamed = unix_addr(&socket2::SockRef::from(&a).local_addr().unwrap()).unwrap();
        assert!(unnamed.is_unnamed());
        assert_eq!(unnamed.as_pathname(), None);

        let std_abstract = std::os::unix::net::SocketAddr::from_abstract_name(b"net-test").unwrap();
        let listener = std::os::unix::net::UnixListener::bind_addr(&std_abstract).unwrap();
        let bound = unix_addr(&socket2::SockRef::from(&listener).local_addr().unwrap()).unwrap();
        assert_eq!(bound.as_abstract_name(), Some(&b"net-test"[..]));

        let ip = SockAddr::from("127.0.0.1:80".parse::<SocketAddr>().unwrap());
        assert_eq!(
            unix_addr(&ip).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn addresses_survive_the_kernel_storage() {
        for text in ["127.0.0.1:8080", "[::1]:443", "[fe80::1%2]:9"] {
            let addr: SocketAddr = text.parse().unwrap();
            let buf = to_sock_addr_buf(&SockAddr::from(addr));
            assert_eq!(to_socket_addr(&buf).unwrap(), addr);
        }
        let unix = SockAddr::unix("/tmp/x.sock").unwrap();
        let back = to_sock_addr(&to_sock_addr_buf(&unix));
        assert_eq!(back.as_pathname(), unix.as_pathname());
        assert_eq!(
            to_socket_addr(&to_sock_addr_buf(&unix)).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
