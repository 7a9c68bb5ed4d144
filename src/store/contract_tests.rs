//! The storage contract suite: what [`super::contract`] promises, checked
//! through the traits alone, so every backend runs the very same cases.
//! A backend joins with one line, `contract_suite!(name, open_fn)`, where
//! `open_fn(Rules) -> Fixture` opens an empty store of that backend.

use std::sync::Arc;

use uuid::Uuid;

use super::contract::Storage;
use super::{CouponClaim, IdempotencyWrite, Maintenance, OpResult, Replay, Rules, WriteOp};
use crate::domain::error::{CouponLimit, Rejection};
use crate::domain::lifecycle::{self, Command};
use crate::domain::order::test_order;
use crate::domain::time::now_millis;
use crate::domain::webhook::{EventFilter, Outbox, Route};
use crate::domain::{Actor, HistoryStatus, ListQuery, OrderStatus};

/// An open, empty store and whatever keeps it alive (a temp dir, a database).
pub(crate) struct Fixture {
    pub storage: Arc<dyn Storage>,
    pub _keep: Box<dyn std::any::Any + Send>,
}

pub(crate) type Open = fn(Rules) -> Fixture;

fn open_redb(rules: Rules) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = super::Store::open_with(&dir.path().join("vpsd.redb"), 1 << 20, rules)
        .expect("open the data file");
    Fixture {
        storage: Arc::new(store),
        _keep: Box::new(dir),
    }
}

/// The test cluster of `tests/support` (Debian's PostgreSQL, started as the
/// `postgres` user in a temp dir), one per test binary.
#[path = "../../tests/support/pg.rs"]
#[allow(dead_code)]
mod pg_cluster;

fn open_postgres(rules: Rules) -> Fixture {
    let url = pg_cluster::cluster().fresh_database();
    let settings = super::pg::PgSettings {
        url,
        pool_size: 4,
        takeover: std::time::Duration::from_secs(10),
    };
    let store = super::pg::PgStore::open(&settings, rules).expect("open the database");
    Fixture {
        storage: Arc::new(store),
        _keep: Box::new(()),
    }
}

mod webrana;
use webrana::{
    a_list_in_several_statuses_merges_them_newest_first,
    per_user_counts_and_orders_since_serve_the_stats,
};

/// Instantiates every case for one backend.
macro_rules! contract_suite {
    ($backend:ident, $open:path) => {
        mod $backend {
            contract_suite!(@cases $open;
                a_created_order_reads_back_with_its_history_and_in_lists,
                a_refused_command_changes_nothing,
                an_owner_check_refuses_anyone_else,
                concurrent_commands_on_one_order_have_exactly_one_winner,
                a_task_saved_from_a_stale_read_is_refused,
                coupon_limits_hold_exactly_under_concurrent_orders,
                history_keeps_commit_order,
                an_idempotent_outcome_commits_with_its_write,
                expired_idempotency_keys_are_swept,
                events_are_queued_by_the_commit_that_causes_them,
                due_orders_follow_the_expiry,
                status_counts_follow_every_change,
                live_orders_are_counted_per_account,
                async_and_blocking_writes_are_one_path,
                a_list_in_several_statuses_merges_them_newest_first,
                per_user_counts_and_orders_since_serve_the_stats
            );
        }
    };
    (@cases $open:path; $($case:ident),+) => {
        $(
            #[test]
            fn $case() {
                super::$case($open);
            }
        )+
    };
}

contract_suite!(redb, super::open_redb);
contract_suite!(postgres, super::open_postgres);

fn user(name: &str) -> Actor {
    Actor::User(name.into())
}

fn create(storage: &dyn Storage, owner: &str) -> Uuid {
    create_with(storage, owner, None).expect("created")
}

fn create_with(
    storage: &dyn Storage,
    owner: &str,
    coupon: Option<CouponClaim>,
) -> Result<Uuid, Rejection> {
    let mut order = test_order(owner);
    if let Some(claim) = &coupon {
        order.pricing.coupon_code = Some(claim.code.clone());
    }
    let change = lifecycle::create(order, &user(owner), now_millis());
    let op = WriteOp::Create {
        change: Box::new(change),
        coupon,
        idempotency: None,
    };
    storage
        .write_blocking(op)
        .expect("storage answers")
        .map(|r| r.order.id)
}

fn apply(storage: &dyn Storage, id: Uuid, command: Command, actor: Actor) -> OpResult {
    apply_owned(storage, id, command, actor, None)
}

fn apply_owned(
    storage: &dyn Storage,
    id: Uuid,
    command: Command,
    actor: Actor,
    owner: Option<&str>,
) -> OpResult {
    let op = WriteOp::Apply {
        order_id: id,
        command,
        actor,
        owner: owner.map(str::to_string),
        idempotency: None,
    };
    storage.write_blocking(op).expect("storage answers")
}

fn pay(storage: &dyn Storage, id: Uuid) -> OpResult {
    apply(
        storage,
        id,
        Command::Pay { notes: None },
        Actor::Admin(None),
    )
}

/// Paid, provisioned and ACTIVE, through the system's own commands.
fn activate(storage: &dyn Storage, id: Uuid) {
    pay(storage, id).expect("paid");
    apply(storage, id, Command::StartProvisioning, Actor::System).expect("provisioning");
    let done = Command::ProvisioningSucceeded { metadata: None };
    apply(storage, id, done, Actor::System).expect("active");
}

fn statuses(storage: &dyn Storage, id: Uuid) -> Vec<HistoryStatus> {
    let rows = storage.history(id).expect("history");
    rows.iter().map(|h| h.new_status).collect()
}

fn everyone(limit: u32) -> ListQuery {
    ListQuery {
        user: None,
        status: None,
        expires_before: None,
        page: 1,
        limit,
    }
}

fn a_created_order_reads_back_with_its_history_and_in_lists(open: Open) {
    let fixture = open(Rules::default());
    let storage = fixture.storage.as_ref();
    let id = create(storage, "alice");
    create(storage, "bob");
    let record = storage.get_order(id).expect("read").expect("stored");
    assert_eq!(record.order.user_id, "alice");
    assert_eq!(record.order.status, OrderStatus::PendingPayment);
    assert_eq!(statuses(storage, id), vec![HistoryStatus::PendingPayment]);
    let all = storage.list_orders(&everyone(10)).expect("list");
    assert_eq!(all.total, 2);
    let alices = storage
        .list_orders(&ListQuery {
            user: Some("alice".into()),
            ..everyone(10)
        })
        .expect("list");
    assert_eq!(alices.total, 1);
    assert_eq!(alices.items[0].order.id, id);
    assert!(storage.get_order(Uuid::new_v4()).expect("read").is_none());
    assert!(storage.history(Uuid::new_v4()).expect("read").is_empty());
}

fn a_refused_command_changes_nothing(open: Open) {
    let fixture = open(Rules::default());
    let storage = fixture.storage.as_ref();
    let id = create(storage, "alice");
    pay(storage, id).expect("paid");
    let before = storage.get_order(id).expect("read");
    let again = pay(storage, id);
    assert!(matches!(again, Err(Rejection::Refused(_))), "{again:?}");
    assert_eq!(storage.get_order(id).expect("read"), before);
    assert_eq!(statuses(storage, id).len(), 2);
    let unknown = pay(storage, Uuid::new_v4());
    assert!(matches!(unknown, Err(Rejection::OrderNotFound)));
}

fn an_owner_check_refuses_anyone_else(open: Open) {
    let fixture = open(Rules::default());
    let storage = fixture.storage.as_ref();
    let id = create(storage, "alice");
    let cancel = || Command::Cancel { reason: None };
    let by_bob = apply_owned(storage, id, cancel(), user("bob"), Some("bob"));
    assert!(matches!(by_bob, Err(Rejection::NotOwner)), "{by_bob:?}");
    let record = storage.get_order(id).expect("read").expect("stored");
    assert_eq!(record.order.status, OrderStatus::PendingPayment);
    let by_alice = apply_owned(storage, id, cancel(), user("alice"), Some("alice"));
    assert_eq!(
        by_alice.expect("canceled").order.status,
        OrderStatus::Canceled
    );
}

fn concurrent_commands_on_one_order_have_exactly_one_winner(open: Open) {
    let fixture = open(Rules::default());
    let storage = fixture.storage.clone();
    let id = create(storage.as_ref(), "alice");
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let storage = storage.clone();
            std::thread::spawn(move || pay(storage.as_ref(), id).is_ok())
        })
        .collect();
    let winners = racers
        .into_iter()
        .map(|r| r.join().expect("racer"))
        .filter(|won| *won)
        .count();
    assert_eq!(winners, 1);
    let paid_rows = statuses(storage.as_ref(), id)
        .into_iter()
        .filter(|s| *s == HistoryStatus::Paid)
        .count();
    assert_eq!(paid_rows, 1);
}

fn a_task_saved_from_a_stale_read_is_refused(open: Open) {
    let fixture = open(Rules::default());
    let storage = fixture.storage.as_ref();
    let id = create(storage, "alice");
    pay(storage, id).expect("paid");
    let open_tasks = storage.open_tasks().expect("open tasks");
    assert_eq!(open_tasks.len(), 1);
    let task = open_tasks[0].task.clone().expect("a paid order has a task");
    let save = |task| WriteOp::SaveTask {
        task: Box::new(task),
        commands: vec![Command::StartProvisioning],
    };
    let first = storage.write_blocking(save(task.clone())).expect("storage");
    assert_eq!(
        first.expect("saved").order.status,
        OrderStatus::Provisioning
    );
    let stale = storage.write_blocking(save(task)).expect("storage");
    assert!(matches!(stale, Err(Rejection::StaleTask)), "{stale:?}");
    assert_eq!(statuses(storage, id).len(), 3);
}

fn coupon_limits_hold_exactly_under_concurrent_orders(open: Open) {
    let fixture = open(Rules::default());
    let storage = fixture.storage.clone();
    let claim = |max_uses| CouponClaim {
        code: "LAUNCH".into(),
        max_uses: Some(max_uses),
        max_uses_per_user: None,
    };
    let buyers: Vec<_> = (0..10)
        .map(|n| {
            let storage = storage.clone();
            std::thread::spawn(move || {
                create_with(storage.as_ref(), &format!("user{n}"), Some(claim(3)))
            })
        })
        .collect();
    let results: Vec<_> = buyers
        .into_iter()
        .map(|b| b.join().expect("buyer"))
        .collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 3);
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| matches!(e, Rejection::CouponLimit(CouponLimit::Global))));
    assert_eq!(storage.list_orders(&everyone(20)).expect("list").total, 3);
    // Canceling one order gives its use back.
    let first = results.iter().find_map(|r| r.as_ref().ok()).expect("one");
    let cancel = Command::Cancel { reason: None };
    apply(storage.as_ref(), *first, cancel, Actor::Admin(None)).expect("canceled");
    assert!(create_with(storage.as_ref(), "late", Some(claim(3))).is_ok());
    let per_user = CouponClaim {
        max_uses_per_user: Some(1),
        ..claim(100)
    };
    assert!(create_with(storage.as_ref(), "carol", Some(per_user.clone())).is_ok());
    let twice = create_with(storage.as_ref(), "carol", Some(per_user));
    assert!(matches!(
        twice,
        Err(Rejection::CouponLimit(CouponLimit::PerUser))
    ));
}

fn history_keeps_commit_order(open: Open) {
    let fixture = open(Rules::default());
    let storage = fixture.storage.as_ref();
    let id = create(storage, "alice");
    activate(storage, id);
    let suspend = Command::Suspend { reason: None };
    apply(storage, id, suspend, Actor::Admin(None)).expect("suspended");
    use HistoryStatus as H;
    assert_eq!(
        statuses(storage, id),
        vec![
            H::PendingPayment,
            H::Paid,
            H::Provisioning,
            H::Active,
            H::Suspended
        ]
    );
}

fn key(name: &str, expires_at: i64) -> IdempotencyWrite {
    IdempotencyWrite {
        scope: "user:alice".into(),
        key: name.into(),
        fingerprint: [7; 32],
        expires_at,
    }
}

fn an_idempotent_outcome_commits_with_its_write(open: Open) {
    let fixture = open(Rules::default());
    let storage = fixture.storage.as_ref();
    let change = lifecycle::create(test_order("alice"), &user("alice"), now_millis());
    let op = WriteOp::Create {
        change: Box::new(change),
        coupon: None,
        idempotency: Some(key("k1", now_millis() + 60_000)),
    };
    let created = storage
        .write_blocking(op)
        .expect("storage")
        .expect("created");
    let stored = storage
        .idempotency("user:alice", "k1")
        .expect("read")
        .expect("the key is stored with the order");
    assert_eq!(stored.fingerprint, [7; 32]);
    match stored.outcome {
        Replay::Outcome(outcome) => {
            assert_eq!(
                outcome.as_ref().as_ref().map(|r| r.order.id).ok(),
                Some(created.order.id)
            )
        }
        other => panic!("not an outcome: {other:?}"),
    }
    assert_eq!(
        storage
            .idempotency_usage("user:alice")
            .expect("usage")
            .stored,
        1
    );
    assert_eq!(
        storage.idempotency_usage("user:bob").expect("usage").stored,
        0
    );
}

fn expired_idempotency_keys_are_swept(open: Open) {
    let fixture = open(Rules::default());
    let storage = fixture.storage.as_ref();
    let now = now_millis();
    for (name, expires_at) in [("old", now - 1), ("live", now + 60_000)] {
        let change = lifecycle::create(test_order("alice"), &user("alice"), now);
        let op = WriteOp::Create {
            change: Box::new(change),
            coupon: None,
            idempotency: Some(key(name, expires_at)),
        };
        storage
            .write_blocking(op)
            .expect("storage")
            .expect("created");
    }
    let swept = storage
        .maintain_blocking(Maintenance::SweepIdempotency { now })
        .expect("sweep");
    assert_eq!(swept, 1);
    assert!(storage
        .idempotency("user:alice", "old")
        .expect("read")
        .is_none());
    assert!(storage
        .idempotency("user:alice", "live")
        .expect("read")
        .is_some());
    let usage = storage.idempotency_usage("user:alice").expect("usage");
    assert_eq!(usage.stored, 1);
    assert_eq!(usage.oldest_expiry, Some(now + 60_000));
}

const HOOK: &str = "http://127.0.0.1:9/hook";

fn events_are_queued_by_the_commit_that_causes_them(open: Open) {
    let rules = Rules {
        outbox: Outbox {
            routes: vec![Route {
                url: HOOK.into(),
                events: EventFilter::All,
            }],
            retry_schedule_ms: vec![1_000],
        },
        ..Rules::default()
    };
    let fixture = open(rules);
    let storage = fixture.storage.as_ref();
    let mut queued = storage.queued_events();
    let seen = *queued.borrow_and_update();
    let id = create(storage, "alice");
    pay(storage, id).expect("paid");
    assert!(
        *queued.borrow_and_update() > seen,
        "no wake-up after the commit"
    );
    // Only an order's oldest pending delivery is due: its events keep order.
    let due = storage.due_deliveries(HOOK, now_millis(), 10).expect("due");
    assert_eq!(due.due.len(), 1);
    let (first, event) = &due.due[0];
    assert_eq!(event.record.order.id, id);
    let stored = storage.delivery(first.id).expect("read").expect("stored");
    assert_eq!(stored.order_id, id);
    let stats = storage.outbox_stats(&[HOOK.into()]).expect("stats");
    assert!(stats.pending >= 1);
    // A refused command queues nothing.
    assert!(pay(storage, id).is_err());
    let after = storage.outbox_stats(&[HOOK.into()]).expect("stats");
    assert_eq!(after.pending, stats.pending);
}

fn due_orders_follow_the_expiry(open: Open) {
    let fixture = open(Rules::default());
    let storage = fixture.storage.as_ref();
    let now = now_millis();
    let (soon, later) = (create(storage, "alice"), create(storage, "bob"));
    activate(storage, soon);
    activate(storage, later);
    let expire = |at| Command::SetExpiry { at, reason: None };
    apply(storage, soon, expire(now - 1_000), Actor::Admin(None)).expect("moved");
    let due = storage.due_orders(now, 10).expect("due");
    assert!(due.contains(&soon), "{due:?}");
    assert!(!due.contains(&later));
    // Beyond every reminder, nothing is due for it any more.
    apply(
        storage,
        soon,
        expire(now + 60 * 86_400_000),
        Actor::Admin(None),
    )
    .expect("moved");
    assert!(!storage.due_orders(now, 10).expect("due").contains(&soon));
}

fn status_counts_follow_every_change(open: Open) {
    let fixture = open(Rules::default());
    let storage = fixture.storage.as_ref();
    let (a, _b) = (create(storage, "alice"), create(storage, "bob"));
    pay(storage, a).expect("paid");
    let counts = storage.status_counts().expect("counts");
    let of = |status| {
        counts
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n)
    };
    assert_eq!(of(OrderStatus::PendingPayment), 1);
    assert_eq!(of(OrderStatus::Paid), 1);
    assert_eq!(counts.iter().map(|(_, n)| n).sum::<u64>(), 2);
}

/// Placed on `account` and saved the way the provisioner saves a placement.
fn place(storage: &dyn Storage, id: Uuid, account: &str) {
    let record = storage.get_order(id).expect("read").expect("stored");
    let mut task = record.task.expect("a paid order has a task");
    task.place_on(account.into());
    let op = WriteOp::SaveTask {
        task: Box::new(task),
        commands: vec![Command::StartProvisioning],
    };
    storage
        .write_blocking(op)
        .expect("storage")
        .expect("placed");
}

fn live_orders_are_counted_per_account(open: Open) {
    let fixture = open(Rules::default());
    let storage = fixture.storage.as_ref();
    let usage = || storage.account_usage().expect("usage");
    let orders: Vec<Uuid> = (0..3).map(|_| create(storage, "alice")).collect();
    for (id, account) in orders.iter().zip(["east", "east", "west"]) {
        pay(storage, *id).expect("paid");
        place(storage, *id, account);
    }
    assert_eq!(usage(), [("east".to_string(), 2), ("west".to_string(), 1)]);
    let failed = Command::ProvisioningFailed {
        message: "gone".into(),
        metadata: None,
    };
    apply(storage, orders[2], failed, Actor::System).expect("failed");
    assert_eq!(usage(), [("east".to_string(), 2)]);
    let done = Command::ProvisioningSucceeded { metadata: None };
    apply(storage, orders[0], done, Actor::System).expect("active");
    assert_eq!(usage(), [("east".to_string(), 2)], "ACTIVE is live");
}

fn async_and_blocking_writes_are_one_path(open: Open) {
    let fixture = open(Rules::default());
    let storage = fixture.storage.clone();
    let id = create(storage.as_ref(), "alice");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let op = WriteOp::Apply {
        order_id: id,
        command: Command::Pay { notes: None },
        actor: Actor::Admin(None),
        owner: None,
        idempotency: None,
    };
    let paid = runtime.block_on(storage.write(op)).expect("storage");
    assert_eq!(paid.expect("paid").order.status, OrderStatus::Paid);
    // The async write is visible to the next blocking read and write.
    assert!(pay(storage.as_ref(), id).is_err());
    let ops = (0..3).map(|_| {
        let change = lifecycle::create(test_order("bob"), &user("bob"), now_millis());
        WriteOp::Create {
            change: Box::new(change),
            coupon: None,
            idempotency: None,
        }
    });
    let results = storage.write_all_blocking(ops.collect());
    assert!(results.iter().all(|r| matches!(r, Ok(Ok(_)))));
    assert_eq!(storage.list_orders(&everyone(10)).expect("list").total, 4);
}
