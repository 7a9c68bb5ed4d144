//! Queries on PostgreSQL. Each is one statement (one consistent snapshot
//! under PostgreSQL's default isolation), or a read-only repeatable-read
//! transaction where a page and its total must agree.

use postgres::types::ToSql;
use postgres::Client;
use uuid::Uuid;

use super::conn::{pg_err, PgConn};
use super::outbox::{decode_record, status_text};
use super::sql;
use crate::backend::store::{IdempotencyRecord, StoreError};
use crate::domain::customer_action::CustomerAction;
use crate::domain::task::ProvisioningTask;
use crate::domain::time::Millis;
use crate::domain::webhook::{DeliveryPage, DeliveryQuery};
use crate::domain::{HistoryEntry, ListQuery, Order, OrderRecord, OrderStatus, Page};

type Params<'a> = Vec<&'a (dyn ToSql + Sync)>;

/// An order row and its task's (`NULL` when it has none).
fn record_of(row: &postgres::Row) -> Result<OrderRecord, StoreError> {
    let order: Order = decode_record(row, 0)?;
    let task = match row.try_get::<_, Option<&[u8]>>(1).map_err(pg_err)? {
        Some(_) => Some(decode_record::<ProvisioningTask>(row, 1)?),
        None => None,
    };
    Ok(OrderRecord { order, task })
}

const RECORD_COLUMNS: &str =
    "SELECT o.record, t.record FROM orders o LEFT JOIN tasks t ON t.order_id = o.id";

pub fn order(conn: &mut PgConn, id: Uuid) -> Result<Option<OrderRecord>, StoreError> {
    let rows = conn.query_prepared(sql::ORDER_WITH_TASK, &[&id])?;
    rows.first().map(record_of).transpose()
}

pub fn history(conn: &mut PgConn, id: Uuid) -> Result<Vec<HistoryEntry>, StoreError> {
    let rows = conn.query_prepared(sql::HISTORY_OF, &[&id])?;
    rows.iter().map(|r| decode_record(r, 0)).collect()
}

pub fn customer_actions(
    conn: &mut PgConn,
    id: Uuid,
    skip: usize,
    limit: usize,
) -> Result<Vec<CustomerAction>, StoreError> {
    let (skip, limit) = (as_i64(skip), as_i64(limit));
    let rows = conn.query_prepared(sql::ACTIONS_OF, &[&id, &skip, &limit])?;
    rows.iter().map(|r| decode_record(r, 0)).collect()
}

fn as_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// One page, newest first (or soonest-expiring first with
/// `expires_before`), and the total the filters match, from one snapshot.
pub fn list(client: &mut Client, q: &ListQuery) -> Result<Page, StoreError> {
    let mut filters = Vec::new();
    let statuses: Option<Vec<String>> = q
        .status
        .map(|set| set.iter().map(|s| s.as_str().to_string()).collect());
    let before = q.expires_before;
    let mut params: Params<'_> = Vec::new();
    if let Some(user) = &q.user {
        params.push(user);
        filters.push(format!("o.user_id = ${}", params.len()));
    }
    if let Some(statuses) = &statuses {
        params.push(statuses);
        filters.push(format!("o.status = ANY(${})", params.len()));
    }
    let order_by = match &before {
        Some(before) => {
            params.push(before);
            filters.push(format!(
                "o.status IN ('ACTIVE', 'SUSPENDED') \
                 AND o.expires_at < to_timestamp(${}::bigint / 1000.0)",
                params.len()
            ));
            "o.expires_at, o.seq"
        }
        None => "o.seq DESC",
    };
    let filter = match filters.is_empty() {
        true => String::new(),
        false => format!(" WHERE {}", filters.join(" AND ")),
    };
    let skip = as_i64((q.page.saturating_sub(1) as usize).saturating_mul(q.limit as usize));
    let take = i64::from(q.limit);
    let mut txn = client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(pg_err)?;
    let count_sql = format!("SELECT count(*) FROM orders o{filter}");
    let total: i64 = txn
        .query_one(count_sql.as_str(), &params)
        .and_then(|r| r.try_get(0))
        .map_err(pg_err)?;
    let total = u64::try_from(total).unwrap_or(0);
    if skip as u64 >= total {
        return Ok(Page {
            items: Vec::new(),
            total,
        });
    }
    let n = params.len();
    params.push(&skip);
    params.push(&take);
    let page_sql = format!(
        "{RECORD_COLUMNS}{filter} ORDER BY {order_by} OFFSET ${} LIMIT ${}",
        n + 1,
        n + 2
    );
    let rows = txn.query(page_sql.as_str(), &params).map_err(pg_err)?;
    let items = rows.iter().map(record_of).collect::<Result<_, _>>()?;
    txn.commit().map_err(pg_err)?;
    Ok(Page { items, total })
}

/// Orders whose task matches `which` (`open`, `owes_work`), with the task.
pub fn with_task_flag(client: &mut Client, which: &str) -> Result<Vec<OrderRecord>, StoreError> {
    let sql = format!(
        "SELECT o.record, t.record FROM tasks t JOIN orders o ON o.id = t.order_id WHERE t.{which}"
    );
    let rows = client.query(sql.as_str(), &[]).map_err(pg_err)?;
    rows.iter().map(record_of).collect()
}

pub fn due_orders(client: &mut Client, now: Millis, limit: usize) -> Result<Vec<Uuid>, StoreError> {
    let rows = client
        .query(
            "SELECT id FROM orders WHERE next_due_ms <= $1 ORDER BY next_due_ms, id LIMIT $2",
            &[&now, &as_i64(limit)],
        )
        .map_err(pg_err)?;
    rows.iter().map(|r| r.try_get(0).map_err(pg_err)).collect()
}

/// The number of orders in every status, of one user or of all.
pub fn status_counts(
    client: &mut Client,
    user: Option<&str>,
) -> Result<Vec<(OrderStatus, u64)>, StoreError> {
    let rows = match user {
        Some(user) => client.query(
            "SELECT status, count(*) FROM orders WHERE user_id = $1 GROUP BY status",
            &[&user],
        ),
        None => client.query("SELECT status, count(*) FROM orders GROUP BY status", &[]),
    }
    .map_err(pg_err)?;
    let mut counted = std::collections::HashMap::new();
    for row in &rows {
        let status: String = row.try_get(0).map_err(pg_err)?;
        let n: i64 = row.try_get(1).map_err(pg_err)?;
        counted.insert(status, u64::try_from(n).unwrap_or(0));
    }
    Ok(OrderStatus::ALL
        .iter()
        .map(|s| (*s, counted.get(s.as_str()).copied().unwrap_or(0)))
        .collect())
}

pub fn created_since(client: &mut Client, since: Millis) -> Result<Vec<OrderRecord>, StoreError> {
    let sql = format!("{RECORD_COLUMNS} WHERE o.created_ms >= $1 ORDER BY o.seq DESC");
    let rows = client.query(sql.as_str(), &[&since]).map_err(pg_err)?;
    rows.iter().map(record_of).collect()
}

pub fn account_usage(client: &mut Client) -> Result<Vec<(String, u64)>, StoreError> {
    let rows = client
        .query(
            "SELECT live_account, count(*) FROM orders WHERE live_account IS NOT NULL \
             GROUP BY live_account ORDER BY live_account",
            &[],
        )
        .map_err(pg_err)?;
    rows.iter()
        .map(|r| {
            let n: i64 = r.try_get(1).map_err(pg_err)?;
            Ok((r.try_get(0).map_err(pg_err)?, u64::try_from(n).unwrap_or(0)))
        })
        .collect()
}

pub fn idempotency(
    conn: &mut PgConn,
    scope: &str,
    key: &str,
) -> Result<Option<IdempotencyRecord>, StoreError> {
    let rows = conn.query_prepared(sql::KEY_GET, &[&scope, &key])?;
    rows.first().map(|r| decode_record(r, 0)).transpose()
}

pub fn deliveries(client: &mut Client, q: &DeliveryQuery) -> Result<DeliveryPage, StoreError> {
    let status = q.status.map(status_text);
    let skip = as_i64((q.page.saturating_sub(1) as usize).saturating_mul(q.limit as usize));
    let take = i64::from(q.limit);
    let filter = "($1::text IS NULL OR status = $1) AND ($2::uuid IS NULL OR order_id = $2)";
    let mut txn = client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(pg_err)?;
    let total: i64 = txn
        .query_one(
            format!("SELECT count(*) FROM webhook_deliveries WHERE {filter}").as_str(),
            &[&status, &q.order_id],
        )
        .and_then(|r| r.try_get(0))
        .map_err(pg_err)?;
    let rows = txn
        .query(
            format!(
                "SELECT record FROM webhook_deliveries WHERE {filter} \
                 ORDER BY id DESC OFFSET $3 LIMIT $4"
            )
            .as_str(),
            &[&status, &q.order_id, &skip, &take],
        )
        .map_err(pg_err)?;
    let items = rows
        .iter()
        .map(|r| decode_record(r, 0))
        .collect::<Result<_, _>>()?;
    txn.commit().map_err(pg_err)?;
    Ok(DeliveryPage {
        items,
        total: u64::try_from(total).unwrap_or(0),
    })
}
