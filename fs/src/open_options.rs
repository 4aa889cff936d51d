//! Opening files with `IORING_OP_OPENAT`: [`OpenOptions`] (std's open
//! flags plus `mode` and `custom_flags`), and the shorthands
//! [`File::open`], [`File::create`] and [`File::options`].

use std::io;
use std::path::Path;

use runtime::op::{OpenAt, Operation};

use crate::cpath::cstring;
use crate::File;

/// Options for opening a file, as in [`std::fs::OpenOptions`], plus
/// [`mode`](OpenOptions::mode) and [`custom_flags`](OpenOptions::custom_flags)
/// (for example `libc::O_DIRECT`).
///
/// ```
/// # runtime::block_on(async {
/// # let path = std::env::temp_dir().join(format!("fs-oo-doc-{}", std::process::id()));
/// let file = fs::OpenOptions::new()
///     .read(true)
///     .write(true)
///     .create_new(true)
///     .mode(0o600)
///     .open(&path)
///     .await?;
/// # drop(file);
/// # fs::remove_file(&path).await?;
/// # Ok::<(), std::io::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct OpenOptions {
    read: bool,
    write: bool,
    append: bool,
    truncate: bool,
    create: bool,
    create_new: bool,
    mode: u32,
    custom_flags: i32,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl OpenOptions {
    /// All options off, mode `0o666` (before the umask).
    pub fn new() -> OpenOptions {
        OpenOptions {
            read: false,
            write: false,
            append: false,
            truncate: false,
            create: false,
            create_new: false,
            mode: 0o666,
            custom_flags: 0,
        }
    }

    /// Open for reading.
    pub fn read(&mut self, read: bool) -> &mut Self {
        self.read = read;
        self
    }

    /// Open for writing.
    pub fn write(&mut self, write: bool) -> &mut Self {
        self.write = write;
        self
    }

    /// Open for appending (`O_APPEND`; implies writing). Note that on Linux
    /// positional writes to an `O_APPEND` file go to the end regardless of
    /// the offset given.
    pub fn append(&mut self, append: bool) -> &mut Self {
        self.append = append;
        self
    }

    /// Truncate an existing file to length 0 (`O_TRUNC`; needs `write`).
    pub fn truncate(&mut self, truncate: bool) -> &mut Self {
        self.truncate = truncate;
        self
    }

    /// Create the file if it does not exist (`O_CREAT`; needs `write` or
    /// `append`).
    pub fn create(&mut self, create: bool) -> &mut Self {
        self.create = create;
        self
    }

    /// Create the file, failing with `AlreadyExists` if it exists
    /// (`O_CREAT | O_EXCL`; needs `write` or `append`). Overrides `create`
    /// and `truncate`.
    pub fn create_new(&mut self, create_new: bool) -> &mut Self {
        self.create_new = create_new;
        self
    }

    /// The permission bits a newly created file gets (before the umask);
    /// default `0o666`.
    pub fn mode(&mut self, mode: u32) -> &mut Self {
        self.mode = mode;
        self
    }

    /// Extra `open(2)` flags, such as `libc::O_DIRECT` or `libc::O_NOATIME`.
    /// The access mode bits (`O_ACCMODE`) are ignored: use `read`/`write`.
    pub fn custom_flags(&mut self, flags: i32) -> &mut Self {
        self.custom_flags = flags;
        self
    }

    /// The `open(2)` flags these options stand for, or `InvalidInput` for
    /// combinations std rejects too (no access mode; `truncate`, `create` or
    /// `create_new` without write access; `truncate` with `append`).
    fn flags(&self) -> io::Result<i32> {
        let access = match (self.read, self.write, self.append) {
            (true, false, false) => libc::O_RDONLY,
            (false, true, false) => libc::O_WRONLY,
            (true, true, false) => libc::O_RDWR,
            (false, _, true) => libc::O_WRONLY | libc::O_APPEND,
            (true, _, true) => libc::O_RDWR | libc::O_APPEND,
            (false, false, false) => {
                return Err(invalid(
                    "no access mode: set read, write or append on OpenOptions",
                ))
            }
        };
        match (self.write, self.append) {
            (true, false) => {}
            (false, false) => {
                if self.truncate || self.create || self.create_new {
                    return Err(invalid(
                        "truncate, create and create_new need write or append access",
                    ));
                }
            }
            (_, true) => {
                if self.truncate && !self.create_new {
                    return Err(invalid("truncate and append cannot be used together"));
                }
            }
        }
        let creation = match (self.create, self.truncate, self.create_new) {
            (false, false, false) => 0,
            (true, false, false) => libc::O_CREAT,
            (false, true, false) => libc::O_TRUNC,
            (true, true, false) => libc::O_CREAT | libc::O_TRUNC,
            (_, _, true) => libc::O_CREAT | libc::O_EXCL,
        };
        Ok(libc::O_CLOEXEC | access | creation | (self.custom_flags & !libc::O_ACCMODE))
    }

    /// Opens `path` with these options (`IORING_OP_OPENAT`, relative paths
    /// from the current directory).
    ///
    /// Errors: the kernel's (`NotFound`, `PermissionDenied`,
    /// `AlreadyExists` for `create_new`, `EINVAL` for `O_DIRECT` where the
    /// file system lacks it, ...); `InvalidInput` for a path with an
    /// interior NUL or an invalid combination of options.
    pub async fn open<P: AsRef<Path>>(&self, path: P) -> io::Result<File> {
        let flags = self.flags()?;
        let path = cstring(path.as_ref())?;
        // If this future is dropped early and the open still succeeds, the
        // runtime closes the new descriptor.
        let fd = OpenAt::new(path, flags, self.mode).submit().await?;
        Ok(File::from_shared(fd))
    }
}

impl File {
    /// Opens a file for reading (`IORING_OP_OPENAT` with `O_RDONLY`).
    ///
    /// A missing file is `NotFound`; a path with an interior NUL byte is
    /// `InvalidInput`.
    pub async fn open<P: AsRef<Path>>(path: P) -> io::Result<File> {
        OpenOptions::new().read(true).open(path).await
    }

    /// Opens a file for writing, creating it or truncating it to length 0
    /// (`O_WRONLY | O_CREAT | O_TRUNC`, mode `0o666` before the umask).
    pub async fn create<P: AsRef<Path>>(path: P) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .await
    }

    /// A fresh [`OpenOptions`], for `File::options().read(true).open(p)`.
    pub fn options() -> OpenOptions {
        OpenOptions::new()
    }
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_follow_std() {
        let f = |o: &OpenOptions| o.flags().map(|f| f & !libc::O_CLOEXEC);
        assert_eq!(f(OpenOptions::new().read(true)).unwrap(), libc::O_RDONLY);
        assert_eq!(
            f(OpenOptions::new().write(true).create(true).truncate(true)).unwrap(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC
        );
        assert_eq!(
            f(OpenOptions::new().read(true).append(true)).unwrap(),
            libc::O_RDWR | libc::O_APPEND
        );
        assert_eq!(
            f(OpenOptions::new().write(true).create(true).create_new(true)).unwrap(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL
        );
        assert_eq!(
            f(OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECT | libc::O_RDWR))
            .unwrap(),
            libc::O_DIRECT
        );
        for bad in [
            OpenOptions::new(),
            OpenOptions::new().read(true).create(true).clone(),
            OpenOptions::new().read(true).truncate(true).clone(),
            OpenOptions::new().append(true).truncate(true).clone(),
        ] {
            assert_eq!(bad.flags().unwrap_err().kind(), io::ErrorKind::InvalidInput);
        }
    }
}
