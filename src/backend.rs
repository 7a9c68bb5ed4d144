//! Everything below the HTTP edge that may touch storage: the store itself,
//! the services the edge calls, the provisioner and the webhook senders.
//!
//! `store` is private to this module, so `api/`, `console/` and the rest of
//! the crate reach orders only through `service`; a `use` of a store type
//! there fails to compile (`module store is private`). The one exception is
//! the `testing` feature, which only the test and bench targets turn on: it
//! makes `store` public for their file surgery (crash tests, schema
//! versions, bulk-loaded benchmark files). CI also checks the crate without
//! it, so a leak cannot hide behind the tests' build.

#[cfg(not(feature = "testing"))]
#[path = "store/mod.rs"]
mod store;
#[cfg(feature = "testing")]
#[path = "store/mod.rs"]
pub mod store;

#[path = "provision/mod.rs"]
pub mod provision;
#[path = "service/mod.rs"]
pub mod service;
#[path = "webhooks/mod.rs"]
pub mod webhooks;

mod parts;

pub use parts::{import_into, Backend, Parts, Surroundings};
pub use store::OpenError;
