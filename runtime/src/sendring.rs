//! Send rings for send bundles (`IORING_RECVSEND_BUNDLE` on send).
