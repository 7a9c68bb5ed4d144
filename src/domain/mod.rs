//! Pure types and rules of the product: no I/O, no async, no storage.
//! Everything above (store, service, api) depends on this module; it depends on nothing of ours.

pub mod access;
pub mod coupon;
pub mod customer_action;
pub mod droplet;
pub mod effects;
pub mod error;
pub mod expiry;
pub mod fleet;
pub mod lifecycle;
pub mod order;
pub mod period;
pub mod record;
pub mod replay;
pub mod stats;
pub mod task;
pub mod time;
pub mod values;
pub mod webhook;
pub mod wire;

pub use order::*;

/// A new identifier for an order, item, task, history row or renewal.
///
/// UUID v7 (SPEC §1): ids minted one after another sort together, so the rows
/// of orders created at about the same time — which also expire and are
/// enforced at about the same time — share B-tree pages instead of each
/// dirtying a page of its own. Ids minted earlier as v4 parse and sort the
/// same way; nothing reads meaning out of an id's version.
pub fn new_id() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}
pub use record::{ListQuery, OrderRecord, Page, StatusSet};
