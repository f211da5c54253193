//! One pass over the whole cluster, as `nokv top`, `nokv doctor`,
//! `nokv region` and `nokv stats` need it: the coordinator's members,
//! stores, regions and operators, every store's own view of its replicas
//! (Admin `RegionStatus`: raft progress per peer, commit and applied
//! indexes) and its request counters (status port `/metrics`).
//!
//! [`Survey`] is plain data so the TUI model and the doctor's checks are
//! pure functions of it and can be tested without a cluster. A store that
//! does not answer does not fail the survey: its error is recorded on the
//! store and its replicas' indexes stay unknown. Only a coordinator that
//! cannot answer fails [`collect`].
//!
//! # Layout
//! - `model.rs`: the survey as plain data, and what follows from it alone.
//! - `fetch.rs`: asking the coordinator and the stores ([`collect`],
//!   [`region`]).
//! - `assemble.rs`: their answers turned into the model.
//! - `fixture.rs` (tests only): a fixed cluster for the TUI and doctor tests.

mod assemble;
mod fetch;
#[cfg(test)]
pub(crate) mod fixture;
mod model;

pub use fetch::{collect, now_ms, region, Scope};
pub use model::{FlowRates, Operator, Operators, Peer, Region, Store, Survey};
