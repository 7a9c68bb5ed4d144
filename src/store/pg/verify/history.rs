//! `vpsd verify URL`: each order's history rows and customer actions.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::SystemTime;

use postgres::{Row, Transaction};
use uuid::Uuid;

use super::super::conn::stamp;
use super::{each_row, Checks};
use crate::domain::customer_action::CustomerAction;
use crate::domain::{HistoryEntry, HistoryStatus, OrderStatus};

/// A history row's number and its record (`None`: it did not decode).
type HistoryRow = (i32, Option<HistoryEntry>);

impl Checks {
    /// History rows, streamed in order: each order's are checked as soon as
    /// the next order's begin.
    pub(super) fn history(&mut self, tx: &mut Transaction<'_>) -> Result<(), postgres::Error> {
        let mut current: Option<(Uuid, Vec<HistoryRow>)> = None;
        let mut seen = Vec::new();
        each_row(tx, HISTORY, |row| {
            let id: Uuid = row.try_get(0)?;
            if current.as_ref().is_some_and(|(c, _)| *c != id) {
                if let Some((done, rows)) = current.take() {
                    self.check_chain(done, &rows);
                    seen.push(done);
                }
            }
            let no: i32 = row.try_get(1)?;
            let entry = self.history_row(id, no, row)?;
            current
                .get_or_insert_with(|| (id, Vec::new()))
                .1
                .push((no, entry));
            self.report.history += 1;
            Ok(())
        })?;
        if let Some((done, rows)) = current.take() {
            self.check_chain(done, &rows);
            seen.push(done);
        }
        let seen: HashSet<Uuid> = seen.into_iter().collect();
        let unseen: Vec<Uuid> = self
            .orders
            .keys()
            .filter(|id| !seen.contains(id))
            .copied()
            .collect();
        for id in unseen {
            self.check_chain(id, &[]);
        }
        Ok(())
    }

    pub(super) fn history_row(
        &mut self,
        id: Uuid,
        no: i32,
        row: &Row,
    ) -> Result<Option<HistoryEntry>, postgres::Error> {
        let entry =
            self.decode::<HistoryEntry>(row, 5, || format!("order {id}: history row {no}"))?;
        if let Some(e) = &entry {
            let column = format!("order_history[{no}]");
            let at: SystemTime = row.try_get(2)?;
            self.agree(id, &format!("{column}.at"), at, stamp(e.created_at));
            let from = e.previous_status.map(|s| s.as_str());
            self.agree(id, &format!("{column}.from_status"), row.try_get(3)?, from);
            let to = e.new_status.as_str();
            self.agree(id, &format!("{column}.to_status"), row.try_get(4)?, to);
        }
        Ok(entry)
    }

    /// Rows `0..history_len`, each starting where the last status change
    /// ended, ending at the order's status; paid exactly when a PAID row is
    /// there (as `vpsd verify FILE` checks them).
    pub(super) fn check_chain(&mut self, id: Uuid, rows: &[HistoryRow]) {
        let Some(order) = self.orders.get(&id) else {
            return;
        };
        let numbered = (0..).zip(rows).all(|(i, (no, _))| i == *no);
        if rows.len() != order.history_len as usize || !numbered {
            let problem = format!(
                "order {id}: history rows are missing or out of order ({} rows, the order counts {})",
                rows.len(),
                order.history_len
            );
            return self.problem(problem);
        }
        let Some(entries) = rows
            .iter()
            .map(|(_, e)| e.as_ref())
            .collect::<Option<Vec<_>>>()
        else {
            return;
        };
        let mut problems = Vec::new();
        let mut last: Option<OrderStatus> = None;
        for (no, row) in entries.iter().enumerate() {
            if row.previous_status != last {
                problems.push(format!(
                    "order {id}: history row {no} starts at {:?}, expected {last:?}",
                    row.previous_status
                ));
            }
            if let Some(status) = row.new_status.status() {
                last = Some(status);
            }
        }
        if last != Some(order.status) {
            problems.push(format!(
                "order {id}: history ends at {last:?} but the order is {}",
                order.status
            ));
        }
        let paid = entries.iter().any(|r| r.new_status == HistoryStatus::Paid);
        if paid != order.paid_at.is_some() {
            problems.push(format!("order {id}: paidAt does not match its history"));
        }
        for p in problems {
            self.problem(p);
        }
    }

    /// Each order has the task's count of actions, and the task's copy of
    /// its last one is that action's row.
    pub(super) fn actions(&mut self, tx: &mut Transaction<'_>) -> Result<(), postgres::Error> {
        let mut rows: HashMap<Uuid, BTreeMap<i32, Option<CustomerAction>>> = HashMap::new();
        each_row(tx, ACTIONS, |row| {
            let id: Uuid = row.try_get(0)?;
            let no: i32 = row.try_get(1)?;
            self.report.actions += 1;
            let action =
                self.decode::<CustomerAction>(row, 4, || format!("order {id}: action {no}"))?;
            if let Some(a) = &action {
                let column = format!("customer_actions[{no}]");
                self.agree(
                    id,
                    &format!("{column}.no"),
                    no,
                    i32::try_from(a.no).unwrap_or(-1),
                );
                self.agree(id, &format!("{column}.id"), row.try_get(2)?, a.id);
                self.agree(
                    id,
                    &format!("{column}.status"),
                    row.try_get(3)?,
                    a.status.as_str(),
                );
                self.agree(id, &format!("{column} order"), id, a.order_id);
            }
            rows.entry(id).or_default().insert(no, action);
            Ok(())
        })?;
        let mut problems = Vec::new();
        for (id, task) in &self.tasks {
            let mine = rows.remove(id).unwrap_or_default();
            if mine.len() != task.actions_len as usize {
                problems.push(format!(
                    "order {id}: {} customer action rows, the task counts {}",
                    mine.len(),
                    task.actions_len
                ));
            }
            if let Some(last) = &task.customer_action {
                let no = i32::try_from(last.no).unwrap_or(-1);
                match mine.get(&no) {
                    None => problems.push(format!(
                        "order {id}: the task's customer action {no} has no row"
                    )),
                    Some(Some(row)) if row != last => problems.push(format!(
                        "order {id}: the task's customer action {no} differs from its row"
                    )),
                    Some(_) => {}
                }
            }
        }
        for id in rows.keys() {
            problems.push(format!("order {id}: customer action rows but no task"));
        }
        for p in problems {
            self.problem(p);
        }
        Ok(())
    }
}

const HISTORY: &str = "SELECT order_id, no, at, from_status, to_status, record \
    FROM order_history ORDER BY order_id, no";
const ACTIONS: &str = "SELECT order_id, no, id, status, record FROM customer_actions";
