//! Pure types and rules of the product: no I/O, no async, no storage.
//! Everything above (store, service, api) depends on this module; it depends on nothing of ours.

pub mod droplet;
pub mod error;
pub mod expiry;
pub mod lifecycle;
pub mod order;
pub mod record;
pub mod task;
pub mod time;
pub mod wire;

pub use order::*;
pub use record::{ListQuery, OrderRecord, Page};
