//! Events out to other systems (SPEC §10), in the Standard Webhooks wire
//! format so receivers verify with its published libraries.
//!
//! So far: signing ([`sign`]). The outbox and the delivery workers come next
//! (issue "Events out").

pub mod sign;
