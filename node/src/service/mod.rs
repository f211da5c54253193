//! gRPC services of the store node.
//!
//! - [`kv`]: the `Kv` data service.
//! - [`admin`]: the per-store `Admin` service.

pub mod admin;
pub mod kv;
