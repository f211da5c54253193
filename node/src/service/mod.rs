//! gRPC services of the store node.
//!
//! - [`kv`]: the `Kv` data service.
//! - [`txn`]: the transactional half of the `Kv` service.
//! - [`admin`]: the per-store `Admin` service.

pub mod admin;
pub mod kv;
pub mod txn;
