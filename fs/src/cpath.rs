//! Paths as the kernel takes them: NUL-terminated C strings.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `path` as a heap-allocated C string (its bytes stay put when the
/// `CString` moves into an operation); an interior NUL byte is
/// `InvalidInput`, as in std.
pub(crate) fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("path contains an interior NUL byte: {path:?}"),
        )
    })
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
