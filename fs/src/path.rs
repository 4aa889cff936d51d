//! Path arguments, and the free functions that work on paths: `UNLINKAT`,
//! `MKDIRAT`, `RENAMEAT`, `STATX`, plus whole-file [`read`] and [`write`].

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use runtime::buf::IoBuf;
use runtime::op::io_uring::{opcode, types};
use runtime::op::{Entry, Op};

use crate::metadata::{statx, Metadata};
use crate::{File, OpenOptions};

/// `path` as a heap-allocated C string (its bytes stay put when the
/// `CString` moves into an operation's data); an interior NUL byte is
/// `InvalidInput`, as in std.
pub(crate) fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("path contains an interior NUL byte: {path:?}"),
        )
    })
}

/// The directory relative paths are resolved against: the current one.
pub(crate) const CWD: types::Fd = types::Fd(libc::AT_FDCWD);

/// Reads the whole file at `path` into a vector.
///
/// The file's size (from `STATX`) sizes the vector up front; reads then
/// continue until one returns 0, so a file that grows meanwhile (or that
/// reports no size, like those in `/proc`) is still read to its end.
pub async fn read<P: AsRef<Path>>(path: P) -> io::Result<Vec<u8>> {
    let file = File::open(path).await?;
    let hint = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let mut buf = Vec::with_capacity(usize::try_from(hint).unwrap_or(0));
    loop {
        if buf.len() == buf.capacity() {
            // Probe with a small read before growing a large vector, so an
            // exact size hint does not double the allocation.
            let (res, probe) = file.read_at(Vec::with_capacity(32), buf.len() as u64).await;
            if res? == 0 {
                break;
            }
            buf.extend_from_slice(&probe);
            buf.reserve(buf.capacity().max(8192));
        }
        let pos = buf.len() as u64;
        let (res, b) = file.read_at(buf, pos).await;
        buf = b;
        match res {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    file.close().await?;
    Ok(buf)
}

/// Writes `data` (its initialised bytes) as the whole contents of the file
/// at `path`, creating it (mode `0o666` before the umask) or truncating it.
pub async fn write<P: AsRef<Path>, B: IoBuf>(path: P, data: B) -> io::Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .await?;
    let (res, _) = file.write_all_at(data, 0).await;
    res?;
    file.close().await
}

/// The metadata of the file at `path`, following symbolic links
/// (`IORING_OP_STATX`).
pub async fn metadata<P: AsRef<Path>>(path: P) -> io::Result<Metadata> {
    statx(None, cstring(path.as_ref())?, 0).await
}

/// The metadata of `path` itself, not following a final symbolic link
/// (`IORING_OP_STATX` with `AT_SYMLINK_NOFOLLOW`).
pub async fn symlink_metadata<P: AsRef<Path>>(path: P) -> io::Result<Metadata> {
    statx(None, cstring(path.as_ref())?, libc::AT_SYMLINK_NOFOLLOW).await
}

/// Runs an operation whose only memory is one path.
async fn path_op(path: &Path, build: impl FnOnce(*const libc::c_char) -> Entry) -> io::Result<()> {
    let path = cstring(path)?;
    // SAFETY: the only pointer in the SQE is the path's bytes, which live in
    // the CString's heap allocation owned by the operation's data; the
    // directory descriptor is AT_FDCWD, which is always valid.
    let op = unsafe { Op::submit(path, |p| build(p.as_ptr())) };
    let (completion, _path) = op.await;
    completion.result().map(drop)
}

/// Removes the file (or symbolic link) at `path` (`IORING_OP_UNLINKAT`).
pub async fn remove_file<P: AsRef<Path>>(path: P) -> io::Result<()> {
    path_op(path.as_ref(), |p| opcode::UnlinkAt::new(CWD, p).build()).await
}

/// Removes the empty directory at `path` (`IORING_OP_UNLINKAT` with
/// `AT_REMOVEDIR`).
pub async fn remove_dir<P: AsRef<Path>>(path: P) -> io::Result<()> {
    path_op(path.as_ref(), |p| {
        opcode::UnlinkAt::new(CWD, p)
            .flags(libc::AT_REMOVEDIR)
            .build()
    })
    .await
}

/// Creates a directory at `path`, mode `0o777` before the umask
/// (`IORING_OP_MKDIRAT`). Its parent must exist; an existing entry is
/// `AlreadyExists`.
pub async fn create_dir<P: AsRef<Path>>(path: P) -> io::Result<()> {
    path_op(path.as_ref(), |p| {
        opcode::MkDirAt::new(CWD, p).mode(0o777).build()
    })
    .await
}

/// Renames `from` to `to`, replacing `to` if it exists
/// (`IORING_OP_RENAMEAT`, like `rename(2)`).
pub async fn rename<P: AsRef<Path>, Q: AsRef<Path>>(from: P, to: Q) -> io::Result<()> {
    let paths = (cstring(from.as_ref())?, cstring(to.as_ref())?);
    // SAFETY: both path pointers point into the CStrings' heap allocations,
    // owned by the operation's data; both directory descriptors are
    // AT_FDCWD.
    let op = unsafe {
        Op::submit(paths, |(from, to)| {
            opcode::RenameAt::new(CWD, from.as_ptr(), CWD, to.as_ptr()).build()
        })
    };
    let (completion, _paths) = op.await;
    completion.result().map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interior_nul_is_invalid_input() {
        let err = cstring(Path::new("a\0b")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(cstring(Path::new("/tmp/x")).unwrap().as_bytes(), b"/tmp/x");
    }
}
