//! Turning raw HTTP input into validated values: body reading under the size
//! limit, content-type rules, JSON shape checks that report every bad field,
//! query strings, and the few headers vpsd reads. Values with rules of their
//! own (ids, hostnames, SSH keys, free text) are parsed into the domain's
//! types ([`crate::domain::values`]); this module adds the field names.
//!
//! One file per request family: `json_body` (reading and the JSON object),
//! `fields` (the field reader every body uses), `new_order`, `commands` (the
//! lifecycle bodies), `query` (path id and list filters), `headers`.

mod actions;
mod commands;
mod fields;
mod headers;
mod json_body;
mod new_order;
mod query;

pub use actions::{action_id, customer_action};
pub use commands::{
    admin_termination, auto_renew, cancel_reason, expiry_change, no_input, payment_status, renewal,
};
pub use headers::{admin_id, fingerprint, idempotency_key};
pub use json_body::{json_object, read_body};
pub use new_order::new_order;
pub use query::{
    account_name, delivery_filters, delivery_query, list_params, order_id, page_params, ListParams,
};
