//! Events out to other systems (SPEC §10), in the Standard Webhooks wire
//! format so receivers verify with its published libraries. Events are
//! written by the store in the transaction of their change (`store::outbox`);
//! this module signs ([`sign`]) and sends them ([`deliver`]).

pub mod client;
pub mod config;
pub mod deliver;
pub mod sign;
