//! Use cases: what a user or operator can ask of vpsd. Catalog look-ups happen
//! here, before and outside any write transaction; every change is one
//! `store::WriteOp`.

pub mod actions;
pub mod backups;
pub mod console;
pub mod idempotency;
pub mod import_v1;
pub mod ops;
pub mod orders;
pub mod paid_period;
pub mod pricing;
pub mod rate_limit;
pub mod store_tools;
pub mod webhooks;
pub mod webrana;

pub use crate::domain::replay::Replay;
pub use idempotency::{IdempotencyKey, Reply};
pub use orders::{NewOrder, OrderService, PaymentUpdate};
