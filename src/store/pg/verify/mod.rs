//! `vpsd verify URL` (SPEC §15 "Operations on PostgreSQL"): the invariants
//! `vpsd verify FILE` checks on a data file, checked on the database, in one
//! read-only snapshot. Every record decodes; the columns people and queries
//! read agree with the record they stand beside; history rows are exactly
//! `0..history_len` and chain; tasks' flags are what the task says; the
//! orders that count a coupon (its limits' count) hold one; every delivery
//! has its event and every event a delivery; the sequences are past
//! everything they numbered.
//!
//! Unlike the file check, which stops at the first problem, every problem
//! is listed (with its order), so one run shows how far damage goes.

mod history;
mod outbox;
mod rows;

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;

use postgres::fallible_iterator::FallibleIterator;
use postgres::{IsolationLevel, NoTls, Row, Transaction};
use uuid::Uuid;

use super::schema::{describe, SCHEMA_VERSION, TABLES};
use super::{describe_url, parse_url};
use crate::backend::store::{codec, OpenError};
use crate::domain::task::ProvisioningTask;
use crate::domain::Order;

/// At most this many problems are kept for the report; the rest are counted.
const LISTED_PROBLEMS: usize = 1000;

/// What `vpsd verify URL` found. The counts use the names `vpsd store copy`
/// prints, so a copy's report and its check read side by side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PgVerifyReport {
    /// `user@host:port/database`: no password.
    pub database: String,
    pub orders: u64,
    pub items: u64,
    pub history: u64,
    pub tasks: u64,
    pub actions: u64,
    pub keys: u64,
    pub coupons: u64,
    pub events: u64,
    pub deliveries: u64,
    pub pending: u64,
    /// Each names its order where there is one; empty when all is well.
    pub problems: Vec<String>,
    /// Problems found beyond the listed ones.
    pub unlisted: u64,
}

impl PgVerifyReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() && self.unlisted == 0
    }
}

/// Checks the database at `url`. `Err` is the one line saying why it could
/// not be checked at all (unreachable, not vpsd's, newer); the problems of a
/// database that could be read are in the report.
pub fn verify(
    url: &str,
    progress: super::super::Progress<'_>,
) -> Result<PgVerifyReport, OpenError> {
    let config = parse_url(url)?;
    let shown = describe_url(&config);
    let mut client = config.connect(NoTls).map_err(|e| {
        OpenError(format!(
            "cannot connect to PostgreSQL {shown}: {}",
            describe(&e)
        ))
    })?;
    let unreadable = |e: postgres::Error| {
        OpenError(format!(
            "PostgreSQL {shown}: cannot read vpsd's tables: {}",
            describe(&e)
        ))
    };
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(unreadable)?;
    check_schema(&mut tx, &shown)?;
    let mut checks = Checks::default();
    checks.report.database = shown.clone();
    checks.run(&mut tx, progress).map_err(unreadable)?;
    tx.commit().map_err(unreadable)?;
    Ok(checks.report)
}

/// All of vpsd's tables, stamped with a schema version this build reads.
fn check_schema(tx: &mut Transaction<'_>, shown: &str) -> Result<(), OpenError> {
    let fail = |e: postgres::Error| {
        OpenError(format!(
            "PostgreSQL {shown}: cannot list tables: {}",
            describe(&e)
        ))
    };
    let present: Vec<String> = tx
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = ANY($1)",
            &[&TABLES],
        )
        .map_err(fail)?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()
        .map_err(fail)?;
    let missing: Vec<&str> = TABLES
        .iter()
        .copied()
        .filter(|t| !present.iter().any(|p| p == t))
        .collect();
    if present.is_empty() {
        return Err(OpenError(format!(
            "PostgreSQL {shown} holds no vpsd tables: nothing to verify"
        )));
    }
    if !missing.is_empty() {
        return Err(OpenError(format!(
            "PostgreSQL {shown} holds only part of vpsd's tables (missing: {})",
            missing.join(", ")
        )));
    }
    let version: Option<i64> = tx
        .query_opt(
            "SELECT value FROM vpsd_meta WHERE key = 'schema_version'",
            &[],
        )
        .and_then(|row| row.map(|r| r.try_get(0)).transpose())
        .map_err(fail)?;
    match version {
        Some(v) if v <= SCHEMA_VERSION => Ok(()),
        Some(v) => Err(OpenError(format!(
            "PostgreSQL {shown} has vpsd schema version {v}, newer than this vpsd supports ({SCHEMA_VERSION})"
        ))),
        None => Err(OpenError(format!(
            "PostgreSQL {shown}: vpsd_meta has no schema version"
        ))),
    }
}

/// Runs `f` on every row of `sql`, streamed: the big tables need not fit in
/// memory.
fn each_row(
    tx: &mut Transaction<'_>,
    sql: &str,
    mut f: impl FnMut(&Row) -> Result<(), postgres::Error>,
) -> Result<(), postgres::Error> {
    let mut rows = tx.query_raw(sql, std::iter::empty::<i32>())?;
    while let Some(row) = rows.next()? {
        f(&row)?;
    }
    Ok(())
}

/// What the checks learnt so far, and what they found.
#[derive(Default)]
struct Checks {
    report: PgVerifyReport,
    orders: HashMap<Uuid, Order>,
    tasks: HashMap<Uuid, ProvisioningTask>,
    /// Coupons some order counts a redemption of.
    coupons: HashSet<String>,
    max_order_seq: i64,
    max_event_seq: i64,
}

impl Checks {
    /// The checks in order; `progress` is told each one done (of 9).
    fn run(
        &mut self,
        tx: &mut Transaction<'_>,
        progress: super::super::Progress<'_>,
    ) -> Result<(), postgres::Error> {
        let step = |n| progress("checking", n, 9);
        each_row(tx, rows::TASKS, |row| self.task_row(row))?;
        step(1);
        each_row(tx, rows::ORDERS, |row| self.order_row(row))?;
        step(2);
        self.listed_rows(tx, "order_items", |o| {
            o.items.iter().map(|i| i.id).collect()
        })?;
        step(3);
        self.listed_rows(tx, "renewals", |o| {
            o.term.renewals.iter().map(|r| r.id).collect()
        })?;
        step(4);
        self.history(tx)?;
        step(5);
        self.actions(tx)?;
        step(6);
        each_row(tx, rows::KEYS, |row| self.key_row(row))?;
        step(7);
        self.outbox(tx)?;
        step(8);
        self.report.coupons = self.coupons.len() as u64;
        self.sequences(tx)?;
        step(9);
        Ok(())
    }

    fn problem(&mut self, text: String) {
        if self.report.problems.len() < LISTED_PROBLEMS {
            self.report.problems.push(text);
        } else {
            self.report.unlisted += 1;
        }
    }

    /// A column and what the record says it should hold.
    fn agree<T: PartialEq + Debug>(&mut self, order: Uuid, column: &str, stored: T, record: T) {
        if stored != record {
            self.problem(format!(
                "order {order}: {column} is {stored:?} but the record says {record:?}"
            ));
        }
    }

    /// The record in column `col`; `None` (and a problem) when it does not
    /// decode.
    fn decode<T: codec::Record>(
        &mut self,
        row: &Row,
        col: usize,
        what: impl FnOnce() -> String,
    ) -> Result<Option<T>, postgres::Error> {
        let bytes: &[u8] = row.try_get(col)?;
        match codec::decode(bytes) {
            Ok(value) => Ok(Some(value)),
            Err(e) => {
                self.problem(format!("{}: the record does not decode: {e}", what()));
                Ok(None)
            }
        }
    }

    /// Each sequence hands out a number past every one already used.
    fn sequences(&mut self, tx: &mut Transaction<'_>) -> Result<(), postgres::Error> {
        for (name, used) in [
            ("vpsd_order_seq", self.max_order_seq),
            ("vpsd_event_seq", self.max_event_seq),
        ] {
            let row = tx.query_one(
                format!("SELECT last_value, is_called FROM {name}").as_str(),
                &[],
            )?;
            let (last, called): (i64, bool) = (row.try_get(0)?, row.try_get(1)?);
            let next = if called { last.saturating_add(1) } else { last };
            if next <= used {
                self.problem(format!(
                    "sequence {name} would hand out {next}, already used (highest {used})"
                ));
            }
        }
        Ok(())
    }
}
