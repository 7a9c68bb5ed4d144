//! Connections to the database, pooled, each with vpsd's statements prepared
//! once when it opens: a statement sent as text costs a second round trip
//! (parse, then execute) on every use.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use postgres::{Client, NoTls, Statement};

use super::super::StoreError;
use super::schema::describe;
use crate::domain::time::Millis;

/// One pooled connection and its prepared statements, by their text.
pub struct PgConn {
    pub client: Client,
    statements: HashMap<&'static str, Statement>,
}

/// A prepared statement for `sql` (one of [`super::sql`]'s constants).
pub fn statement(
    statements: &HashMap<&'static str, Statement>,
    sql: &'static str,
) -> Result<Statement, StoreError> {
    statements
        .get(sql)
        .cloned()
        .ok_or_else(|| StoreError::Corrupt(format!("statement not prepared: {sql}")))
}

/// The pooled connection is used as its client where a query's text is
/// built per call (lists, counts) and cannot be prepared ahead.
impl std::ops::Deref for PgConn {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl std::ops::DerefMut for PgConn {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

impl PgConn {
    /// Runs one of [`super::sql`]'s statements, prepared when the
    /// connection opened: one round trip, where text costs two.
    pub fn query_prepared(
        &mut self,
        sql: &'static str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>, StoreError> {
        let prepared = statement(&self.statements, sql)?;
        self.client.query(&prepared, params).map_err(pg_err)
    }

    /// The client and the statements, borrowed apart, so a transaction of
    /// the one can use the other.
    pub fn split(&mut self) -> (&mut Client, &HashMap<&'static str, Statement>) {
        (&mut self.client, &self.statements)
    }
}

/// Opens pooled connections for r2d2.
pub struct Connector {
    pub config: postgres::Config,
}

impl r2d2::ManageConnection for Connector {
    type Connection = PgConn;
    type Error = postgres::Error;

    fn connect(&self) -> Result<PgConn, postgres::Error> {
        let mut client = self.config.connect(NoTls)?;
        let mut statements = HashMap::new();
        for sql in super::sql::ALL {
            statements.insert(*sql, client.prepare(sql)?);
        }
        Ok(PgConn { client, statements })
    }

    fn is_valid(&self, conn: &mut PgConn) -> Result<(), postgres::Error> {
        conn.client.simple_query("").map(drop)
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.client.is_closed()
    }
}

pub type Pool = r2d2::Pool<Connector>;

pub fn pg_err(e: postgres::Error) -> StoreError {
    StoreError::Unavailable(format!("PostgreSQL: {}", describe(&e)))
}

pub fn pool_err(e: r2d2::Error) -> StoreError {
    StoreError::Unavailable(format!("PostgreSQL: no connection: {e}"))
}

/// A millisecond time as PostgreSQL's `timestamptz`, for the readable columns.
pub fn stamp(ms: Millis) -> SystemTime {
    match u64::try_from(ms) {
        Ok(ms) => UNIX_EPOCH + Duration::from_millis(ms),
        Err(_) => UNIX_EPOCH,
    }
}

/// Runs blocking database work from wherever the caller is: an async
/// worker of the multi-threaded runtime hands its other tasks on first; a
/// single-threaded runtime (a test's) cannot, and runs it on a scoped
/// thread, since the client may not block inside it.
pub fn off_runtime<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        Ok(_) => std::thread::scope(|s| match s.spawn(work).join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        }),
        Err(_) => work(),
    }
}
