//! The free functions that work on paths, as in `std::fs`: `UNLINKAT`,
//! `MKDIRAT`, `RENAMEAT`, `STATX`, plus whole-file [`read`] and [`write`].

use std::io;
use std::path::Path;

use runtime::buf::IoBuf;
use runtime::op::{MkDirAt, Operation, RenameAt, Statx, UnlinkAt};

use crate::cpath::cstring;
use crate::metadata::{statx, Metadata};
use crate::{File, OpenOptions};

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
    statx(Statx::path(cstring(path.as_ref())?, 0)).await
}

/// The metadata of `path` itself, not following a final symbolic link
/// (`IORING_OP_STATX` with `AT_SYMLINK_NOFOLLOW`).
pub async fn symlink_metadata<P: AsRef<Path>>(path: P) -> io::Result<Metadata> {
    statx(Statx::path(
        cstring(path.as_ref())?,
        libc::AT_SYMLINK_NOFOLLOW,
    ))
    .await
}

/// Removes the file (or symbolic link) at `path` (`IORING_OP_UNLINKAT`).
pub async fn remove_file<P: AsRef<Path>>(path: P) -> io::Result<()> {
    UnlinkAt::file(cstring(path.as_ref())?).submit().await
}

/// Removes the empty directory at `path` (`IORING_OP_UNLINKAT` with
/// `AT_REMOVEDIR`).
pub async fn remove_dir<P: AsRef<Path>>(path: P) -> io::Result<()> {
    UnlinkAt::dir(cstring(path.as_ref())?).submit().await
}

/// Creates a directory at `path`, mode `0o777` before the umask
/// (`IORING_OP_MKDIRAT`). Its parent must exist; an existing entry is
/// `AlreadyExists`.
pub async fn create_dir<P: AsRef<Path>>(path: P) -> io::Result<()> {
    MkDirAt::new(cstring(path.as_ref())?, 0o777).submit().await
}

/// Renames `from` to `to`, replacing `to` if it exists
/// (`IORING_OP_RENAMEAT`, like `rename(2)`).
pub async fn rename<P: AsRef<Path>, Q: AsRef<Path>>(from: P, to: Q) -> io::Result<()> {
    let (from, to) = (cstring(from.as_ref())?, cstring(to.as_ref())?);
    RenameAt::new(from, to).submit().await
}
