//! The contract's cases for the reads the Webrana UIs' lists and
//! dashboards use (SPEC §14), apart so the suite's file stays readable.

use super::*;
use crate::domain::StatusSet;

/// `status=A,B` (SPEC §14): the orders in any of the statuses, newest first
/// across them, paged, with the total of all of them, for everyone's list
/// and for one user's.
pub(super) fn a_list_in_several_statuses_merges_them_newest_first(open: Open) {
    let fixture = open(Rules::default());
    let storage = fixture.storage.as_ref();
    // Oldest first: alice paid, bob pending, alice canceled, bob paid, alice pending.
    let a_paid = create(storage, "alice");
    pay(storage, a_paid).expect("paid");
    let b_pending = create(storage, "bob");
    let a_canceled = create(storage, "alice");
    apply(
        storage,
        a_canceled,
        Command::Cancel { reason: None },
        Actor::Admin(None),
    )
    .expect("canceled");
    let b_paid = create(storage, "bob");
    pay(storage, b_paid).expect("paid");
    let a_pending = create(storage, "alice");
    let set: StatusSet = [OrderStatus::PendingPayment, OrderStatus::Paid]
        .into_iter()
        .collect();
    let ids = |query: &ListQuery| -> (Vec<Uuid>, u64) {
        let page = storage.list_orders(query).expect("list");
        (page.items.iter().map(|r| r.order.id).collect(), page.total)
    };
    let all = ListQuery {
        status: Some(set),
        ..everyone(10)
    };
    assert_eq!(ids(&all), (vec![a_pending, b_paid, b_pending, a_paid], 4));
    let second = ListQuery {
        page: 2,
        limit: 3,
        ..all.clone()
    };
    assert_eq!(ids(&second), (vec![a_paid], 4));
    let past_the_end = ListQuery {
        page: 3,
        limit: 3,
        ..all.clone()
    };
    assert_eq!(ids(&past_the_end), (vec![], 4));
    let alices = ListQuery {
        user: Some("alice".into()),
        ..all.clone()
    };
    assert_eq!(ids(&alices), (vec![a_pending, a_paid], 2));
    let every_status: StatusSet = OrderStatus::ALL.iter().copied().collect();
    let everything = ListQuery {
        status: Some(every_status),
        ..everyone(10)
    };
    assert_eq!(ids(&everything).1, 5);
}

/// The reads behind SPEC §14's stats: one user's counts per status, and
/// the orders created since an instant, newest first.
pub(super) fn per_user_counts_and_orders_since_serve_the_stats(open: Open) {
    let fixture = open(Rules::default());
    let storage = fixture.storage.as_ref();
    let created_at = |owner: &str, at: i64| {
        let mut order = test_order(owner);
        order.created_at = at;
        let change = lifecycle::create(order, &user(owner), at);
        let op = WriteOp::Create {
            change: Box::new(change),
            coupon: None,
            idempotency: None,
        };
        let done = storage.write_blocking(op).expect("storage answers");
        done.expect("created").order.id
    };
    let old = created_at("alice", 1_000);
    pay(storage, old).expect("paid");
    let bobs = created_at("bob", 2_000);
    let alices = created_at("alice", 2_500);
    let since = 2_000;
    let of = |user: &str, status: OrderStatus| {
        let counts = storage.user_status_counts(user).expect("counts");
        assert_eq!(counts.len(), OrderStatus::ALL.len());
        counts.iter().find(|(s, _)| *s == status).map_or(0, |c| c.1)
    };
    assert_eq!(of("alice", OrderStatus::Paid), 1);
    assert_eq!(of("alice", OrderStatus::PendingPayment), 1);
    assert_eq!(of("bob", OrderStatus::PendingPayment), 1);
    assert_eq!(of("carol", OrderStatus::PendingPayment), 0);
    let recent = storage.orders_created_since(since).expect("since");
    let ids: Vec<Uuid> = recent.iter().map(|r| r.order.id).collect();
    assert_eq!(ids, vec![alices, bobs]);
    assert_eq!(storage.orders_created_since(0).expect("all").len(), 3);
}
