//! Helpers shared by the example programs in this directory.

/// The first command-line argument, or `default` if there is none.
pub fn arg_or(default: &str) -> String {
    std::env::args()
        .nth(1)
        .unwrap_or_else(|| default.to_string())
}
