//! Zero-copy sends (`IORING_OP_SEND_ZC`) on stream sockets.
//!
//! A zero-copy send posts two CQEs: the **result** (bytes sent or an
//! error, with `IORING_CQE_F_MORE` set when a notification follows) and
//! the **notification** (`IORING_CQE_F_NOTIF`, without `F_MORE`) saying
//! that the kernel no longer reads the buffer. The operation is therefore
//! a multishot operation ([`runtime::op::SendZc`]): the buffer and a
//! handle on the descriptor stay owned by the operation until the CQE
//! without `F_MORE`, also when the future is dropped (the runtime then
//! parks them until that CQE). A send that fails before the kernel took the buffer posts one
//! CQE without `F_MORE` and no notification; the stream ends there too.
//!
//! Where zero copy is not available the send falls back to a plain
//! `IORING_OP_SEND` ([`Path`]): when the kernel does not know the opcode
//! ([`runtime::features`]`().send_zc`), and when the socket refuses it
//! (`EOPNOTSUPP`: Unix domain sockets have no zero-copy path).
//!
//! `send_zc_fixed` is the same send from a registered buffer
//! ([`runtime::fixed`]): the SQE carries `IORING_RECVSEND_FIXED_BUF` and
//! the buffer's slot, so the kernel skips pinning the pages; an
//! unregistered buffer goes out as an ordinary zero-copy send.

use runtime::buf::IoBuf;
use runtime::fixed::FixedIoBuf;
use runtime::op::{self, Operation, SendZc, SharedFd};
use runtime::BufResult;

/// How a `send_zc` call sent its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Path {
    /// `IORING_OP_SEND_ZC`: result CQE, then the notification.
    ZeroCopy,
    /// Plain `IORING_OP_SEND`: the kernel does not support `SEND_ZC`.
    Copy,
    /// Plain `IORING_OP_SEND` after the socket refused `SEND_ZC` with
    /// `EOPNOTSUPP` (nothing was sent by the refused SQE).
    CopyAfterRefusal,
}

/// The decision made before submitting: zero copy if the kernel has the
/// opcode, else a plain send.
pub(crate) fn first_choice(kernel_has_send_zc: bool) -> Path {
    if kernel_has_send_zc {
        Path::ZeroCopy
    } else {
        Path::Copy
    }
}

/// `send_zc` of the stream methods: one zero-copy send of `buf`'s
/// initialised bytes with `MSG_NOSIGNAL`, resolved after the notification.
pub(crate) async fn send_zc<B: IoBuf>(fd: &SharedFd, buf: B) -> BufResult<usize, B> {
    let first = first_choice(runtime::features().send_zc);
    let (res, buf, _path) = send_zc_via(fd, buf, first, libc::MSG_NOSIGNAL).await;
    (res, buf)
}

/// `write_all_zc` of the stream methods: all of `buf`'s initialised bytes,
/// with `MSG_WAITALL` so that the kernel itself retries short sends and a
/// whole buffer usually takes one operation (one notification).
pub(crate) async fn write_all_zc<B: IoBuf>(fd: &SharedFd, buf: B) -> BufResult<(), B> {
    let mut first = first_choice(runtime::features().send_zc);
    let total = buf.bytes_init();
    let mut written = 0;
    let mut buf = buf;
    while written < total {
        let (res, slice, path) = send_zc_via(
            fd,
            buf.slice(written..total),
            first,
            libc::MSG_NOSIGNAL | libc::MSG_WAITALL,
        )
        .await;
        buf = slice.into_inner();
        // A socket that refused zero copy refuses it again: do not retry.
        if path == Path::CopyAfterRefusal {
            first = Path::Copy;
        }
        match res {
            Ok(0) => {
                return (
                    Err(std::io::Error::new(
                        std::io::ErrorKind::WriteZero,
                        format!("stream took no more bytes after {written} of {total}"),
                    )),
                    buf,
                )
            }
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return (Err(e), buf),
        }
    }
    (Ok(()), buf)
}

/// `send_zc_fixed` of the stream methods: [`send_zc`] from a registered
/// buffer (`IORING_RECVSEND_FIXED_BUF` with the buffer's slot), or from
/// plain memory when the buffer is not registered on this runtime; falls
/// back to a plain send like `send_zc`.
pub(crate) async fn send_zc_fixed<B: FixedIoBuf>(fd: &SharedFd, buf: B) -> BufResult<usize, B> {
    let first = first_choice(runtime::features().send_zc);
    let (res, buf, _path) = send_zc_made(fd, buf, first, libc::MSG_NOSIGNAL, SendZc::fixed).await;
    (res, buf)
}

/// One send of `buf` starting on `path` (`ZeroCopy` or `Copy`), with the
/// path actually taken.
pub(crate) async fn send_zc_via<B: IoBuf>(
    fd: &SharedFd,
    buf: B,
    path: Path,
    flags: i32,
) -> (std::io::Result<usize>, B, Path) {
    send_zc_made(fd, buf, path, flags, SendZc::new).await
}

/// [`send_zc_via`], the zero-copy operation made by `make`
/// ([`SendZc::new`], or [`SendZc::fixed`] for a registered buffer).
async fn send_zc_made<B: IoBuf>(
    fd: &SharedFd,
    buf: B,
    path: Path,
    flags: i32,
    make: fn(&SharedFd, B, i32) -> SendZc<B>,
) -> (std::io::Result<usize>, B, Path) {
    if path != Path::ZeroCopy {
        let (res, buf) = plain_send(fd, buf, flags).await;
        return (res, buf, path);
    }
    let (res, buf) = make(fd, buf, flags).finish().await;
    match res {
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
            let (res, buf) = plain_send(fd, buf, flags).await;
            (res, buf, Path::CopyAfterRefusal)
        }
        res => (res, buf, Path::ZeroCopy),
    }
}

/// One `IORING_OP_SEND` with `flags`.
async fn plain_send<B: IoBuf>(fd: &SharedFd, buf: B, flags: i32) -> BufResult<usize, B> {
    op::Send::new(fd, buf).flags(flags).submit().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::OwnedFd;

    #[test]
    fn decision_follows_the_probe() {
        assert_eq!(first_choice(true), Path::ZeroCopy);
        assert_eq!(first_choice(false), Path::Copy);
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    /// Sends `len` bytes on `path` through `a` while a thread reads them
    /// from `b`; checks the bytes and the returned buffer and gives the
    /// path taken.
    fn round_trip<R: Read + Send + 'static>(a: OwnedFd, mut b: R, len: usize, path: Path) -> Path {
        let reader = std::thread::spawn(move || {
            let mut got = vec![0u8; len];
            b.read_exact(&mut got).map(|()| got)
        });
        let data = pattern(len);
        let fd = SharedFd::new(a);
        let (res, buf, taken) = runtime::block_on(send_zc_via(
            &fd,
            data.clone(),
            path,
            libc::MSG_NOSIGNAL | libc::MSG_WAITALL,
        ));
        assert_eq!(res.expect("send"), len);
        assert!(buf == data, "buffer changed");
        let got = reader.join().expect("reader thread").expect("read_exact");
        assert!(got == data, "received bytes differ");
        taken
    }

    fn tcp_pair() -> (OwnedFd, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (b, _) = listener.accept().unwrap();
        (a.into(), b)
    }

    fn kernel_has_send_zc() -> bool {
        runtime::block_on(async { runtime::features().send_zc })
    }

    #[test]
    fn copy_path_when_the_kernel_lacks_send_zc() {
        let (a, b) = tcp_pair();
        assert_eq!(round_trip(a, b, 300_000, first_choice(false)), Path::Copy);
    }

    #[test]
    fn tcp_takes_zero_copy_when_the_kernel_has_it() {
        let (a, b) = tcp_pair();
        let first = first_choice(kernel_has_send_zc());
        assert_eq!(round_trip(a, b, 300_000, first), first);
    }

    #[test]
    fn unix_socket_refusal_falls_back() {
        if !kernel_has_send_zc() {
            eprintln!("kernel without SEND_ZC: nothing to refuse");
            return;
        }
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(
            round_trip(a.into(), b, 100_000, Path::ZeroCopy),
            Path::CopyAfterRefusal
        );
    }
}
