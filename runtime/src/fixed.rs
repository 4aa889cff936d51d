//! Registered (fixed) buffers: `IORING_REGISTER_BUFFERS`, `READ_FIXED` / `WRITE_FIXED`.
