//! Linked file operations (write then sync).
