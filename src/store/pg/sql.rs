//! Every statement the store runs, prepared on each pooled connection when
//! it opens (see [`super::conn`]).

pub const ORDER_FOR_UPDATE: &str = "SELECT record FROM orders WHERE id = $1 FOR UPDATE";
pub const TASK: &str = "SELECT record FROM tasks WHERE order_id = $1";
pub const NEXT_ORDER_SEQ: &str = "SELECT nextval('vpsd_order_seq')";
pub const NEXT_EVENT_SEQ: &str = "SELECT nextval('vpsd_event_seq')";
/// Claims of one coupon take turns (to the commit) on this lock.
pub const COUPON_LOCK: &str =
    "SELECT pg_advisory_xact_lock(hashtextextended('vpsd-coupon:' || $1, 0))";
/// Redemptions of a coupon, all and one user's: the orders counting it.
pub const COUPON_COUNT: &str = "SELECT count(*), count(*) FILTER (WHERE user_id = $2) \
    FROM orders WHERE coupon_code = $1 AND coupon_counted";
/// An order's row with its new history rows and, for a new order, its
/// items, in one statement: each round trip inside a transaction is a
/// wake-up of vpsd and of the server, and on a busy host those wake-ups are
/// most of a change's cost. History and items come as arrays, one element
/// per row (empty arrays write no rows); the foreign keys are checked at
/// the statement's end, after the order's row is in.
pub const ORDER_WRITE: &str = "WITH o AS (INSERT INTO orders \
    (id, seq, user_id, status, plan_id, image_id, final_price, currency, coupon_code, \
     coupon_counted, created_at, created_ms, paid_at, expires_at, next_due_ms, live_account, \
     record) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
    ON CONFLICT (id) DO UPDATE SET status = $4, image_id = $6, coupon_counted = $10, \
     paid_at = $13, expires_at = $14, next_due_ms = $15, live_account = $16, record = $17), \
    h AS (INSERT INTO order_history \
    (order_id, no, at, from_status, to_status, actor, reason, record) \
    SELECT $1::uuid, * FROM unnest($18::integer[], $19::timestamptz[], $20::text[], \
     $21::text[], $22::text[], $23::text[], $24::bytea[])) \
    INSERT INTO order_items \
    (order_id, no, id, item_type, reference_id, description, unit_price, quantity, total_price) \
    SELECT $1::uuid, * FROM unnest($25::integer[], $26::uuid[], $27::text[], $28::text[], \
     $29::text[], $30::bigint[], $31::integer[], $32::bigint[])";
pub const RENEWAL_ROW: &str = "INSERT INTO renewals \
    (order_id, no, id, renewal_type, periods, amount, new_expiry, actor, created_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING";
pub const TASK_PUT: &str = "INSERT INTO tasks \
    (order_id, status, account, droplet_id, ipv4, revision, open, owes_work, updated_at, record) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
    ON CONFLICT (order_id) DO UPDATE SET status = $2, account = $3, droplet_id = $4, ipv4 = $5, \
     revision = $6, open = $7, owes_work = $8, updated_at = $9, record = $10";
pub const LIVE_ACCOUNT_SET: &str = "UPDATE orders SET live_account = $2 WHERE id = $1";
pub const ACTION_PUT: &str = "INSERT INTO customer_actions \
    (order_id, no, id, kind, status, requested_by, created_at, record) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
    ON CONFLICT (order_id, no) DO UPDATE SET status = $5, record = $8";
/// Stores a key unless a live one holds it; no row back: it is held.
pub const KEY_PUT: &str = "INSERT INTO idempotency_keys (scope, key, expires_ms, record) \
    VALUES ($1, $2, $3, $4) \
    ON CONFLICT (scope, key) DO UPDATE SET expires_ms = $3, record = $4 \
     WHERE idempotency_keys.expires_ms <= $5 \
    RETURNING 1";
pub const EVENT_PUT: &str =
    "INSERT INTO webhook_events (id, order_id, kind, committed_at, record) \
    VALUES ($1, $2, $3, $4, $5)";
pub const DELIVERY_PUT: &str = "INSERT INTO webhook_deliveries \
    (id, event_id, order_id, endpoint, event_seq, status, attempts, next_attempt_ms, created_ms, \
     delivered_ms, record) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
    ON CONFLICT (id) DO UPDATE SET status = $6, attempts = $7, next_attempt_ms = $8, \
     delivered_ms = $10, record = $11";

pub const ORDER_WITH_TASK: &str = "SELECT o.record, t.record FROM orders o \
    LEFT JOIN tasks t ON t.order_id = o.id WHERE o.id = $1";
pub const HISTORY_OF: &str = "SELECT record FROM order_history WHERE order_id = $1 ORDER BY no";
pub const ACTIONS_OF: &str = "SELECT record FROM customer_actions WHERE order_id = $1 \
    ORDER BY no DESC OFFSET $2 LIMIT $3";
pub const KEY_GET: &str = "SELECT record FROM idempotency_keys WHERE scope = $1 AND key = $2";
pub const DELIVERY_GET: &str = "SELECT record FROM webhook_deliveries WHERE id = $1";

/// Every statement above, prepared per connection.
pub const ALL: &[&str] = &[
    ORDER_FOR_UPDATE,
    TASK,
    NEXT_ORDER_SEQ,
    NEXT_EVENT_SEQ,
    COUPON_LOCK,
    COUPON_COUNT,
    ORDER_WRITE,
    RENEWAL_ROW,
    TASK_PUT,
    LIVE_ACCOUNT_SET,
    ACTION_PUT,
    KEY_PUT,
    EVENT_PUT,
    DELIVERY_PUT,
    ORDER_WITH_TASK,
    HISTORY_OF,
    ACTIONS_OF,
    KEY_GET,
    DELIVERY_GET,
];
