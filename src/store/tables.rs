//! Every redb table and key layout in one place. Keys sort the way queries read:
//! index keys end in the order's commit sequence, so "newest first" is a reverse
//! range scan and a page costs O(page), not O(all orders).
//!
//! Every table written per order is a page rewritten at each commit, so the
//! layout keeps them few: history is keyed by the order's sequence (appends
//! land on the same pages), and the per-user index is written once at
//! creation and never moves, so a status change touches only global ranges.

use redb::TableDefinition;

/// Bumped when a table or key layout changes; a newer file is refused at open.
/// 3 added the webhook outbox tables (created empty when an older file opens).
/// 4 replaced `orders_by_user_status` with `orders_by_user` (see [`BY_USER`]).
/// 5 added [`IDEMPOTENCY_BY_SCOPE`] and the per-caller key counts (built from
/// the stored keys when an older file opens).
/// 6 added the per-account counts; 7 the customer actions ([`CUSTOMER_ACTIONS`],
/// created empty when an older file opens).
pub const SCHEMA_VERSION: u64 = 7;

/// Count keys of [`CountScope::Account`] start with this.
pub const ACCOUNT_COUNT_PREFIX: &str = "ac:";

/// `schema_version`, `order_seq` (last assigned order sequence).
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub const META_SCHEMA_VERSION: &str = "schema_version";
pub const META_ORDER_SEQ: &str = "order_seq";
/// Fingerprint of the expiry policy the `due` index was computed with.
pub const META_DUE_POLICY: &str = "due_policy";
/// Last assigned event sequence: the commit order of outgoing events.
pub const META_EVENT_SEQ: &str = "event_seq";

/// order id -> encoded `Order` (items are embedded: they never change).
pub const ORDERS: TableDefinition<u128, &[u8]> = TableDefinition::new("orders");
/// (order seq, row number) -> encoded `HistoryEntry`, in commit order.
pub const HISTORY: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("history");
/// order id -> encoded `ProvisioningTask` (at most one per order).
pub const TASKS: TableDefinition<u128, &[u8]> = TableDefinition::new("tasks");
/// order ids whose task is PENDING or IN_PROGRESS: the reconciler's work list.
pub const OPEN_TASKS: TableDefinition<u128, ()> = TableDefinition::new("open_tasks");

/// seq -> order id: every order, newest last.
pub const BY_SEQ: TableDefinition<u64, u128> = TableDefinition::new("orders_by_seq");
/// (status code, seq) -> order id.
pub const BY_STATUS: TableDefinition<(u8, u64), u128> = TableDefinition::new("orders_by_status");
/// (user, seq) -> order id, written once when the order is created. A status
/// is not part of the key: an index sorted by user first spreads the orders
/// one sweep suspends over every user's range, so moving them there made an
/// expiry sweep cost O(users touched) pages. A user's orders in one status
/// are found by checking each against [`BY_STATUS`] instead.
pub const BY_USER: TableDefinition<(&str, u64), u128> = TableDefinition::new("orders_by_user");
/// Schema 1-3's per-user index: read only to migrate and to verify old files.
pub const LEGACY_BY_USER_STATUS: TableDefinition<(&str, u8, u64), u128> =
    TableDefinition::new("orders_by_user_status");
/// Row counts per index range, kept in the same transaction as the rows so a
/// list's `total` is one lookup. Keys: see [`count_key`].
pub const COUNTS: TableDefinition<&str, u64> = TableDefinition::new("counts");

/// Coupon code -> redemptions of orders that hold it (embedded catalog only).
pub const COUPON_USES: TableDefinition<&str, u64> = TableDefinition::new("coupon_uses");
/// (coupon code, user) -> redemptions by that user.
pub const COUPON_USER_USES: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("coupon_user_uses");

/// (scope, key) -> encoded idempotency record.
pub const IDEMPOTENCY: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("idempotency");
/// (expires at ms, scope, key): lets the sweeper delete expired keys in order.
pub const IDEMPOTENCY_EXPIRY: TableDefinition<(i64, &str, &str), ()> =
    TableDefinition::new("idempotency_expiry");
/// (scope, expires at ms, key): each caller's keys, oldest first, for the
/// per-caller limit (see `store::idempotency`).
pub const IDEMPOTENCY_BY_SCOPE: TableDefinition<(&str, i64, &str), ()> =
    TableDefinition::new("idempotency_by_scope");

/// (next due ms, order id): ACTIVE and SUSPENDED orders by when the reconciler
/// must next look at them (a reminder, a suspension, a termination), so a
/// sweep reads only what is due.
pub const DUE: TableDefinition<(i64, u128), ()> = TableDefinition::new("orders_due");
/// order ids whose task owes a droplet action (power off / on, delete) or
/// holds an open customer action: the reconciler's droplet work list.
pub const PENDING_ACTIONS: TableDefinition<u128, ()> = TableDefinition::new("pending_actions");
/// (order id, action number) -> encoded `CustomerAction` (SPEC §14), every
/// action an order was asked, so its list reads newest first by a reverse
/// range. The task holds a copy of the last one; both are written together.
pub const CUSTOMER_ACTIONS: TableDefinition<(u128, u32), &[u8]> =
    TableDefinition::new("customer_actions");

/// event id -> encoded outbox event (the order as the change left it). Kept
/// while any of its deliveries is.
pub const EVENTS: TableDefinition<u128, &[u8]> = TableDefinition::new("webhook_events");
/// delivery id -> encoded `Delivery` (one event to one endpoint).
pub const DELIVERIES: TableDefinition<u128, &[u8]> = TableDefinition::new("webhook_deliveries");
/// (endpoint url, event seq) -> delivery id: each endpoint's pending
/// deliveries in commit order, the delivery workers' work list.
pub const DELIVERY_QUEUE: TableDefinition<(&str, u64), u128> =
    TableDefinition::new("webhook_queue");
/// (status code, delivery id): the admin list by status, newest last (v7 ids).
pub const DELIVERIES_BY_STATUS: TableDefinition<(u8, u128), ()> =
    TableDefinition::new("webhook_deliveries_by_status");
/// (order id, delivery id): an order's deliveries.
pub const DELIVERIES_BY_ORDER: TableDefinition<(u128, u128), ()> =
    TableDefinition::new("webhook_deliveries_by_order");
/// (delivered at ms, delivery id): what the retention sweep prunes, oldest first.
pub const DELIVERED_AT: TableDefinition<(i64, u128), ()> =
    TableDefinition::new("webhook_delivered_at");

/// Which slice of the orders a count describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountScope<'a> {
    All,
    Status(u8),
    UserStatus(&'a str, u8),
    /// Webhook deliveries in one status (code from `store::outbox`).
    Deliveries(u8),
    /// Stored idempotency keys of one scope (`user:{sub}` or `internal`).
    IdempotencyKeys(&'a str),
    /// Live orders whose server is on one DigitalOcean account (SPEC §13).
    Account(&'a str),
}

/// Count keys are prefixed by kind, so a user id containing `:` cannot collide
/// with another kind's key (status codes are single digits).
pub fn count_key(scope: CountScope<'_>) -> String {
    match scope {
        CountScope::All => "all".to_string(),
        CountScope::Status(s) => format!("s:{s}"),
        CountScope::UserStatus(u, s) => format!("us:{s}:{u}"),
        CountScope::Deliveries(s) => format!("wh:{s}"),
        CountScope::IdempotencyKeys(scope) => format!("ik:{scope}"),
        CountScope::Account(name) => format!("{ACCOUNT_COUNT_PREFIX}{name}"),
    }
}

/// Something done to every table: created at open, copied by a snapshot,
/// walked by verify. redb's `TableDefinition<K, V>` differs in type per table,
/// so the list cannot be an array of values; a visitor with a generic method
/// lets one function ([`for_each`]) hold the list instead.
pub trait TableVisitor {
    type Error;
    fn visit<K: redb::Key + 'static, V: redb::Value + 'static>(
        &mut self,
        table: TableDefinition<'static, K, V>,
    ) -> Result<(), Self::Error>;
}

/// The one list of tables. A table added here is created at every open,
/// copied into every snapshot and walked by `vpsd verify`; a table missing
/// here would silently be left out of backups.
pub fn for_each<T: TableVisitor>(visitor: &mut T) -> Result<(), T::Error> {
    visitor.visit(META)?;
    visitor.visit(ORDERS)?;
    visitor.visit(HISTORY)?;
    visitor.visit(TASKS)?;
    visitor.visit(OPEN_TASKS)?;
    visitor.visit(BY_SEQ)?;
    visitor.visit(BY_STATUS)?;
    visitor.visit(BY_USER)?;
    visitor.visit(COUNTS)?;
    visitor.visit(COUPON_USES)?;
    visitor.visit(COUPON_USER_USES)?;
    visitor.visit(IDEMPOTENCY)?;
    visitor.visit(IDEMPOTENCY_EXPIRY)?;
    visitor.visit(IDEMPOTENCY_BY_SCOPE)?;
    visitor.visit(DUE)?;
    visitor.visit(PENDING_ACTIONS)?;
    visitor.visit(CUSTOMER_ACTIONS)?;
    visitor.visit(EVENTS)?;
    visitor.visit(DELIVERIES)?;
    visitor.visit(DELIVERY_QUEUE)?;
    visitor.visit(DELIVERIES_BY_STATUS)?;
    visitor.visit(DELIVERIES_BY_ORDER)?;
    visitor.visit(DELIVERED_AT)?;
    Ok(())
}
