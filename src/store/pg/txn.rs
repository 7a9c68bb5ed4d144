//! One write's PostgreSQL transaction with the connection's prepared
//! statements, and what the write learnt on the way. The write path
//! ([`super::write`]) and the outbox ([`super::outbox`]) both write
//! through it.

use std::collections::HashMap;

use postgres::{Statement, Transaction};
use uuid::Uuid;

use super::conn::statement;
use crate::backend::store::StoreError;
use crate::domain::task::ProvisioningTask;
use crate::domain::OrderStatus;

/// One operation's transaction and what it learnt on the way.
pub struct PgTxn<'a, 'c> {
    pub tx: &'a mut Transaction<'c>,
    pub statements: &'a HashMap<&'static str, Statement>,
    /// Tasks read or written in this transaction, so writing an order can
    /// tell which account it lives on without reading its task again.
    pub(super) tasks: HashMap<Uuid, Option<ProvisioningTask>>,
    /// Renewals each loaded order had, so only new ones get a row.
    pub(super) renewals: HashMap<Uuid, usize>,
    /// Each loaded order's status, for the account a task alone moves it to.
    pub(super) statuses: HashMap<Uuid, OrderStatus>,
    /// Deliveries queued: the commit tells the instance that sends them.
    pub queued: usize,
    /// Work for the reconciler was committed (an order paid, a task opened
    /// or owing a droplet action): the commit wakes the leading instance.
    pub wakes_reconciler: bool,
}

impl<'a, 'c> PgTxn<'a, 'c> {
    pub fn new(
        tx: &'a mut Transaction<'c>,
        statements: &'a HashMap<&'static str, Statement>,
    ) -> PgTxn<'a, 'c> {
        PgTxn {
            tx,
            statements,
            tasks: HashMap::new(),
            renewals: HashMap::new(),
            statuses: HashMap::new(),
            queued: 0,
            wakes_reconciler: false,
        }
    }

    pub fn stmt(&self, sql: &'static str) -> Result<Statement, StoreError> {
        statement(self.statements, sql)
    }
}
