//! vpsd's own tables on PostgreSQL (SPEC §15): relational and readable with
//! `psql`. Every row keeps vpsd's encoded record (`record bytea`) beside the
//! columns people and queries read, so a round trip through the database
//! is exact and the columns are never the only copy of anything. Created
//! and migrated at start-up under an advisory lock, so instances starting
//! at once take turns.

use postgres::Client;

use super::super::OpenError;

/// Bumped when a table or column changes; a database stamped with a newer
/// version stops start-up.
pub const SCHEMA_VERSION: i64 = 1;

/// The advisory lock key of schema changes ("vpsd" and 1 in ASCII).
const MIGRATION_LOCK: i64 = 0x7670_7364_0000_0001;

/// Every table vpsd creates, in the order they are created. A database that
/// has some other table of these names is another application's.
pub const TABLES: &[&str] = &[
    "vpsd_meta",
    "orders",
    "order_items",
    "order_history",
    "renewals",
    "tasks",
    "customer_actions",
    "idempotency_keys",
    "webhook_events",
    "webhook_deliveries",
];

const CREATE: &str = r#"
CREATE TABLE vpsd_meta (
    key   text PRIMARY KEY,
    value bigint NOT NULL
);
CREATE SEQUENCE vpsd_order_seq;
CREATE SEQUENCE vpsd_event_seq;
CREATE TABLE orders (
    id           uuid PRIMARY KEY,
    seq          bigint NOT NULL UNIQUE,
    user_id      text NOT NULL,
    status       text NOT NULL,
    plan_id      text NOT NULL,
    image_id     text NOT NULL,
    final_price  bigint NOT NULL,
    currency     text NOT NULL,
    coupon_code  text,
    -- This order counts a redemption of coupon_code (released when an
    -- unpaid order is canceled): the coupon's use count is these rows.
    coupon_counted boolean NOT NULL,
    created_at   timestamptz NOT NULL,
    created_ms   bigint NOT NULL,
    paid_at      timestamptz,
    expires_at   timestamptz,
    next_due_ms  bigint,
    live_account text,
    record       bytea NOT NULL
);
CREATE INDEX orders_by_status ON orders (status, seq);
CREATE INDEX orders_by_user ON orders (user_id, seq);
CREATE INDEX orders_due ON orders (next_due_ms, id) WHERE next_due_ms IS NOT NULL;
CREATE INDEX orders_by_account ON orders (live_account) WHERE live_account IS NOT NULL;
CREATE INDEX orders_by_created ON orders (created_ms);
CREATE INDEX orders_counting_coupon ON orders (coupon_code, user_id) WHERE coupon_counted;
CREATE TABLE order_items (
    order_id     uuid NOT NULL REFERENCES orders (id),
    no           integer NOT NULL,
    id           uuid NOT NULL,
    item_type    text NOT NULL,
    reference_id text NOT NULL,
    description  text NOT NULL,
    unit_price   bigint NOT NULL,
    quantity     integer NOT NULL,
    total_price  bigint NOT NULL,
    PRIMARY KEY (order_id, no)
);
CREATE TABLE order_history (
    order_id    uuid NOT NULL REFERENCES orders (id),
    no          integer NOT NULL,
    at          timestamptz NOT NULL,
    from_status text,
    to_status   text NOT NULL,
    actor       text NOT NULL,
    reason      text,
    record      bytea NOT NULL,
    PRIMARY KEY (order_id, no)
);
CREATE TABLE renewals (
    order_id     uuid NOT NULL REFERENCES orders (id),
    no           integer NOT NULL,
    id           uuid NOT NULL,
    renewal_type text NOT NULL,
    periods      integer NOT NULL,
    amount       bigint NOT NULL,
    new_expiry   timestamptz NOT NULL,
    actor        text NOT NULL,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (order_id, no)
);
CREATE TABLE tasks (
    order_id   uuid PRIMARY KEY REFERENCES orders (id),
    status     text NOT NULL,
    account    text,
    droplet_id bigint,
    ipv4       text,
    revision   bigint NOT NULL,
    open       boolean NOT NULL,
    owes_work  boolean NOT NULL,
    updated_at timestamptz NOT NULL,
    record     bytea NOT NULL
);
CREATE INDEX tasks_open ON tasks (order_id) WHERE open;
CREATE INDEX tasks_owing_work ON tasks (order_id) WHERE owes_work;
CREATE TABLE customer_actions (
    order_id     uuid NOT NULL REFERENCES orders (id),
    no           integer NOT NULL,
    id           uuid NOT NULL,
    kind         text NOT NULL,
    status       text NOT NULL,
    requested_by text NOT NULL,
    created_at   timestamptz NOT NULL,
    record       bytea NOT NULL,
    PRIMARY KEY (order_id, no)
);
CREATE TABLE idempotency_keys (
    scope      text NOT NULL,
    key        text NOT NULL,
    expires_ms bigint NOT NULL,
    record     bytea NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_by_expiry ON idempotency_keys (expires_ms);
CREATE INDEX idempotency_by_scope ON idempotency_keys (scope, expires_ms);
CREATE TABLE webhook_events (
    id           uuid PRIMARY KEY,
    order_id     uuid NOT NULL,
    kind         text NOT NULL,
    committed_at timestamptz NOT NULL,
    record       bytea NOT NULL
);
CREATE TABLE webhook_deliveries (
    id              uuid PRIMARY KEY,
    event_id        uuid NOT NULL REFERENCES webhook_events (id),
    order_id        uuid NOT NULL,
    endpoint        text NOT NULL,
    event_seq       bigint NOT NULL,
    status          text NOT NULL,
    attempts        integer NOT NULL,
    next_attempt_ms bigint,
    created_ms      bigint NOT NULL,
    delivered_ms    bigint,
    record          bytea NOT NULL
);
CREATE INDEX deliveries_queue ON webhook_deliveries (endpoint, event_seq) WHERE status = 'PENDING';
CREATE INDEX deliveries_by_status ON webhook_deliveries (status, id);
CREATE INDEX deliveries_by_order ON webhook_deliveries (order_id, id);
CREATE INDEX deliveries_delivered ON webhook_deliveries (delivered_ms, id) WHERE delivered_ms IS NOT NULL;
"#;

/// Creates the tables in an empty database, or checks an existing one is
/// vpsd's and not newer than this build. `shown` names the database in the
/// one start-up line (never the password).
pub fn prepare(client: &mut Client, shown: &str) -> Result<(), OpenError> {
    let fail = |what: &str, e: postgres::Error| {
        OpenError(format!("PostgreSQL {shown}: {what}: {}", describe(&e)))
    };
    let mut txn = client
        .transaction()
        .map_err(|e| fail("cannot begin a transaction", e))?;
    // Held to the end of this transaction: a second instance starting now
    // waits here, then finds the tables made.
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(|e| fail("cannot take the schema lock", e))?;
    let present: Vec<String> = txn
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = ANY($1)",
            &[&TABLES],
        )
        .map_err(|e| fail("cannot list tables", e))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if present.is_empty() {
        refuse_foreign(&mut txn, shown)?;
        txn.batch_execute(CREATE)
            .map_err(|e| fail("cannot create vpsd's tables", e))?;
        txn.execute(
            "INSERT INTO vpsd_meta (key, value) VALUES ('schema_version', $1)",
            &[&SCHEMA_VERSION],
        )
        .map_err(|e| fail("cannot stamp the schema version", e))?;
        txn.commit()
            .map_err(|e| fail("cannot commit the schema", e))?;
        tracing::info!(database = %shown, version = SCHEMA_VERSION, "vpsd tables created");
        return Ok(());
    }
    if !present.iter().any(|t| t == "vpsd_meta") {
        return Err(OpenError(format!(
            "PostgreSQL {shown} holds tables of another application ({}); give vpsd a database of its own",
            present.join(", ")
        )));
    }
    let version: Option<i64> = txn
        .query_opt(
            "SELECT value FROM vpsd_meta WHERE key = 'schema_version'",
            &[],
        )
        .map_err(|e| fail("cannot read the schema version", e))?
        .map(|row| row.get(0));
    match version {
        Some(v) if v > SCHEMA_VERSION => Err(OpenError(format!(
            "PostgreSQL {shown} has vpsd schema version {v}, newer than this vpsd supports ({SCHEMA_VERSION}); upgrade vpsd"
        ))),
        Some(_) if present.len() == TABLES.len() => {
            txn.commit().map_err(|e| fail("cannot commit", e))?;
            Ok(())
        }
        _ => Err(OpenError(format!(
            "PostgreSQL {shown} holds only part of vpsd's tables (found {}); restore it or start from an empty database",
            present.join(", ")
        ))),
    }
}

/// A database with tables but none of vpsd's still may belong to another
/// application: vpsd takes only an empty one.
fn refuse_foreign(txn: &mut postgres::Transaction<'_>, shown: &str) -> Result<(), OpenError> {
    let others: Vec<String> = txn
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = current_schema() ORDER BY 1 LIMIT 5",
            &[],
        )
        .map_err(|e| {
            OpenError(format!(
                "PostgreSQL {shown}: cannot list tables: {}",
                describe(&e)
            ))
        })?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if others.is_empty() {
        return Ok(());
    }
    Err(OpenError(format!(
        "PostgreSQL {shown} holds tables of another application ({}); give vpsd a database of its own",
        others.join(", ")
    )))
}

/// A PostgreSQL error as one line: the server's message when it sent one,
/// else the client's (connection refused, timeouts).
pub fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(inner) = source {
                text = format!("{text}: {inner}");
                source = inner.source();
            }
            text
        }
    }
}
