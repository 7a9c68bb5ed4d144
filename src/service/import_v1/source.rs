//! Reading the v1 order-service's database (SPEC §16): its four tables
//! under the v1 Prisma schema's names, in one read-only snapshot, a page of
//! orders at a time with their items, history rows and task. Nothing here
//! writes: the transaction is `READ ONLY`, so even a mistake could not.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use postgres::{Client, NoTls, Row, Transaction};
use uuid::Uuid;

use crate::domain::time::Millis;

/// The v1 tables import-v1 reads, as Prisma maps them.
pub const V1_TABLES: [&str; 4] = [
    "orders",
    "order_items",
    "provisioning_tasks",
    "status_history",
];

/// One v1 order with everything that belongs to it.
#[derive(Debug, Clone)]
pub struct V1Order {
    pub id: Uuid,
    pub user_id: String,
    pub plan_id: String,
    pub plan_name: String,
    pub image_id: String,
    pub image_name: String,
    pub duration: String,
    pub base_price: i64,
    pub promo_discount: i64,
    pub coupon_code: Option<String>,
    pub coupon_discount: i64,
    pub final_price: i64,
    pub currency: String,
    pub status: String,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub paid_at: Option<Millis>,
    pub items: Vec<V1Item>,
    pub history: Vec<V1History>,
    pub task: Option<V1Task>,
}

#[derive(Debug, Clone)]
pub struct V1Item {
    pub id: Uuid,
    pub item_type: String,
    pub reference_id: String,
    pub description: String,
    pub unit_price: i64,
    pub quantity: i64,
    pub total_price: i64,
    pub created_at: Millis,
}

#[derive(Debug, Clone)]
pub struct V1History {
    pub id: Uuid,
    pub previous_status: String,
    pub new_status: String,
    pub actor: String,
    pub reason: Option<String>,
    pub metadata: Option<String>,
    pub created_at: Millis,
}

#[derive(Debug, Clone)]
pub struct V1Task {
    pub id: Uuid,
    pub status: String,
    pub do_region: Option<String>,
    pub do_size: Option<String>,
    pub do_image: Option<String>,
    pub droplet_id: Option<String>,
    pub droplet_name: Option<String>,
    pub ipv4_public: Option<String>,
    pub ipv4_private: Option<String>,
    pub droplet_status: Option<String>,
    pub droplet_tags: Vec<String>,
    pub droplet_created_at: Option<Millis>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub attempts: i64,
    pub started_at: Option<Millis>,
    pub completed_at: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// A row of a child table whose order does not exist: reported, never
/// imported (there is nothing to import it into).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub table: &'static str,
    pub id: Uuid,
    pub order_id: Uuid,
}

const ORDER_COLUMNS: &str = "SELECT id, user_id, plan_id, plan_name, image_id, image_name, \
    duration::text, base_price::bigint, promo_discount::bigint, coupon_code, \
    coupon_discount::bigint, final_price::bigint, currency, status::text, created_at, \
    updated_at, paid_at FROM orders";
const ITEMS_OF: &str = "SELECT order_id, id, item_type::text, reference_id, description, \
    unit_price::bigint, quantity::bigint, total_price::bigint, created_at \
    FROM order_items WHERE order_id = ANY($1) ORDER BY order_id, created_at, id";
const HISTORY_OF: &str = "SELECT order_id, id, previous_status, new_status, actor, reason, \
    metadata::text, created_at FROM status_history WHERE order_id = ANY($1) \
    ORDER BY order_id, created_at, id";
const TASKS_OF: &str = "SELECT order_id, id, status::text, do_region, do_size, do_image, \
    droplet_id, droplet_name, ipv4_public, ipv4_private, droplet_status, droplet_tags, \
    droplet_created_at, error_code, error_message, attempts::bigint, started_at, \
    completed_at, created_at, updated_at FROM provisioning_tasks WHERE order_id = ANY($1)";

/// The v1 database, open in one read-only snapshot.
pub struct V1Source {
    client: Client,
}

impl V1Source {
    /// Connects and checks that the four v1 tables are there. Each error
    /// is one line without the URL's password.
    pub fn connect(url: &str) -> Result<V1Source, String> {
        let config: postgres::Config = url
            .parse()
            .map_err(|_| "--database-url: not a postgres:// URL".to_string())?;
        let shown = crate::backend::store::pg::describe_url(&config);
        let mut client = config
            .connect(NoTls)
            .map_err(|e| format!("cannot reach the v1 database {shown}: {}", first_line(&e)))?;
        let present: Vec<String> = client
            .query(
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = ANY($1)",
                &[&V1_TABLES.to_vec()],
            )
            .map_err(|e| format!("cannot read the v1 database {shown}: {}", first_line(&e)))?
            .iter()
            .filter_map(|row| row.try_get(0).ok())
            .collect();
        let missing: Vec<&str> = V1_TABLES
            .iter()
            .copied()
            .filter(|t| !present.iter().any(|p| p == t))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "{shown} is not a v1 order-service database: no table {}",
                missing.join(", ")
            ));
        }
        Ok(V1Source { client })
    }

    /// A read-only repeatable-read transaction: every page of every pass
    /// sees the same rows.
    pub fn snapshot(&mut self) -> Result<Snapshot<'_>, String> {
        let tx = self
            .client
            .build_transaction()
            .read_only(true)
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .start()
            .map_err(|e| format!("cannot read the v1 database: {}", first_line(&e)))?;
        Ok(Snapshot { tx })
    }
}

pub struct Snapshot<'a> {
    tx: Transaction<'a>,
}

/// Where the next page starts: after this (created_at, id); `None` before
/// the first page.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cursor {
    after: Option<(SystemTime, Uuid)>,
}

impl Snapshot<'_> {
    pub fn count_orders(&mut self) -> Result<u64, String> {
        let row = self
            .tx
            .query_one("SELECT count(*) FROM orders", &[])
            .map_err(read_err)?;
        let n: i64 = row.try_get(0).map_err(read_err)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Up to `limit` orders after `cursor`, oldest first, each whole; an
    /// empty page is the end.
    pub fn page(&mut self, cursor: &mut Cursor, limit: i64) -> Result<Vec<V1Order>, String> {
        let rows = match cursor.after {
            None => self.tx.query(
                &format!("{ORDER_COLUMNS} ORDER BY created_at, id LIMIT $1"),
                &[&limit],
            ),
            Some((at, id)) => self.tx.query(
                &format!(
                    "{ORDER_COLUMNS} WHERE (created_at, id) > ($1, $2) \
                     ORDER BY created_at, id LIMIT $3"
                ),
                &[&at, &id, &limit],
            ),
        }
        .map_err(read_err)?;
        let mut orders = rows.iter().map(order_of).collect::<Result<Vec<_>, _>>()?;
        if let Some(last) = rows.last() {
            cursor.after = Some((get(last, 14)?, get(last, 0)?));
        }
        let ids: Vec<Uuid> = orders.iter().map(|o| o.id).collect();
        let mut items = group(self.tx.query(ITEMS_OF, &[&ids]).map_err(read_err)?, item_of)?;
        let mut history = group(
            self.tx.query(HISTORY_OF, &[&ids]).map_err(read_err)?,
            history_of,
        )?;
        let mut tasks = group(self.tx.query(TASKS_OF, &[&ids]).map_err(read_err)?, task_of)?;
        for order in &mut orders {
            order.items = items.remove(&order.id).unwrap_or_default();
            order.history = history.remove(&order.id).unwrap_or_default();
            order.task = tasks.remove(&order.id).and_then(|mut t| t.pop());
        }
        Ok(orders)
    }

    /// Items, history rows and tasks whose order is missing.
    pub fn orphans(&mut self) -> Result<Vec<Orphan>, String> {
        let mut found = Vec::new();
        for table in ["order_items", "status_history", "provisioning_tasks"] {
            let sql = format!(
                "SELECT c.id, c.order_id FROM {table} c \
                 WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = c.order_id) ORDER BY c.id"
            );
            for row in self.tx.query(sql.as_str(), &[]).map_err(read_err)? {
                found.push(Orphan {
                    table,
                    id: row.try_get(0).map_err(read_err)?,
                    order_id: row.try_get(1).map_err(read_err)?,
                });
            }
        }
        Ok(found)
    }
}

fn group<T>(
    rows: Vec<Row>,
    each: fn(&Row) -> Result<T, String>,
) -> Result<HashMap<Uuid, Vec<T>>, String> {
    let mut by_order: HashMap<Uuid, Vec<T>> = HashMap::new();
    for row in &rows {
        let order_id: Uuid = row.try_get(0).map_err(read_err)?;
        by_order.entry(order_id).or_default().push(each(row)?);
    }
    Ok(by_order)
}

fn order_of(row: &Row) -> Result<V1Order, String> {
    Ok(V1Order {
        id: get(row, 0)?,
        user_id: get(row, 1)?,
        plan_id: get(row, 2)?,
        plan_name: get(row, 3)?,
        image_id: get(row, 4)?,
        image_name: get(row, 5)?,
        duration: get(row, 6)?,
        base_price: get(row, 7)?,
        promo_discount: get(row, 8)?,
        coupon_code: get(row, 9)?,
        coupon_discount: get(row, 10)?,
        final_price: get(row, 11)?,
        currency: get(row, 12)?,
        status: get(row, 13)?,
        created_at: millis(get(row, 14)?),
        updated_at: millis(get(row, 15)?),
        paid_at: get::<Option<SystemTime>>(row, 16)?.map(millis),
        items: Vec::new(),
        history: Vec::new(),
        task: None,
    })
}

fn item_of(row: &Row) -> Result<V1Item, String> {
    Ok(V1Item {
        id: get(row, 1)?,
        item_type: get(row, 2)?,
        reference_id: get(row, 3)?,
        description: get(row, 4)?,
        unit_price: get(row, 5)?,
        quantity: get(row, 6)?,
        total_price: get(row, 7)?,
        created_at: millis(get(row, 8)?),
    })
}

fn history_of(row: &Row) -> Result<V1History, String> {
    Ok(V1History {
        id: get(row, 1)?,
        previous_status: get(row, 2)?,
        new_status: get(row, 3)?,
        actor: get(row, 4)?,
        reason: get(row, 5)?,
        metadata: get(row, 6)?,
        created_at: millis(get(row, 7)?),
    })
}

fn task_of(row: &Row) -> Result<V1Task, String> {
    Ok(V1Task {
        id: get(row, 1)?,
        status: get(row, 2)?,
        do_region: get(row, 3)?,
        do_size: get(row, 4)?,
        do_image: get(row, 5)?,
        droplet_id: get(row, 6)?,
        droplet_name: get(row, 7)?,
        ipv4_public: get(row, 8)?,
        ipv4_private: get(row, 9)?,
        droplet_status: get(row, 10)?,
        droplet_tags: get::<Option<Vec<String>>>(row, 11)?.unwrap_or_default(),
        droplet_created_at: get::<Option<SystemTime>>(row, 12)?.map(millis),
        error_code: get(row, 13)?,
        error_message: get(row, 14)?,
        attempts: get(row, 15)?,
        started_at: get::<Option<SystemTime>>(row, 16)?.map(millis),
        completed_at: get::<Option<SystemTime>>(row, 17)?.map(millis),
        created_at: millis(get(row, 18)?),
        updated_at: millis(get(row, 19)?),
    })
}

fn get<'a, T: postgres::types::FromSql<'a>>(row: &'a Row, i: usize) -> Result<T, String> {
    row.try_get(i).map_err(read_err)
}

/// Milliseconds since the epoch; Prisma's `timestamptz` keeps milliseconds.
fn millis(at: SystemTime) -> Millis {
    match at.duration_since(UNIX_EPOCH) {
        Ok(after) => Millis::try_from(after.as_millis()).unwrap_or(Millis::MAX),
        Err(before) => -Millis::try_from(before.duration().as_millis()).unwrap_or(Millis::MAX),
    }
}

fn read_err(e: postgres::Error) -> String {
    format!("cannot read the v1 database: {}", first_line(&e))
}

fn first_line(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => e.to_string().lines().next().unwrap_or_default().to_string(),
    }
}
