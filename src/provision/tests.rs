//! The reconciler against a sandbox whose boots, power actions and deletes
//! take time (SPEC §12 "Desired state is the last one asked for"): whatever
//! status changes arrive, in whatever order with sweeps, and however long
//! the droplet's actions are still running when the next change comes, the
//! droplet ends where the order's last status says, and no action is ever
//! sent while another one runs on the droplet.
//!
//! The sandbox's clock is moved forward explicitly, so an action is "still
//! running" exactly when the generated steps say so, with no sleeping.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use uuid::Uuid;

use super::{Provisioner, Settings};
use crate::backend::store::{Rules, Store, WriteOp};
use crate::cloud::fleet::Fleet;
use crate::cloud::sandbox::Sandbox;
use crate::cloud::{Cloud, CloudError};
use crate::domain::customer_action::{ActionAsk, ActionType, ImageChoice};
use crate::domain::droplet::DropletStatus;
use crate::domain::expiry::Policy;
use crate::domain::lifecycle::{self, Command, Event};
use crate::domain::order::test_order;
use crate::domain::task::ProvisioningError;
use crate::domain::time::now_millis;
use crate::domain::{Actor, OrderRecord, OrderStatus};
use crate::metrics::Metrics;

/// How long every sandbox boot, power action and delete takes.
const ACTION: Duration = Duration::from_millis(1_000);

/// One thing that happens to an ACTIVE order.
#[derive(Debug, Clone)]
enum Step {
    /// The `sample`th sample command of `event`: every admin-side event the
    /// lifecycle's rules allow on a live order, drawn from those rules, so
    /// a new command is in the game as soon as it is registered (expiry
    /// changes include lapsing within the grace and past it).
    Command { event: Event, sample: usize },
    /// A reconciler sweep (expiry, provisioning, droplet actions).
    Sweep,
    /// The sandbox's clock moves on by this many milliseconds.
    Wait(u64),
    /// The owner asks for a customer action (SPEC §14), no cooldown.
    Customer(ActionType),
    /// vpsd restarts: a new reconciler with nothing in memory.
    Restart,
}

/// Events the rules allow from ACTIVE or SUSPENDED, with their sample counts.
fn live_events() -> Vec<(Event, usize)> {
    let live = [OrderStatus::Active, OrderStatus::Suspended];
    Event::ALL
        .iter()
        .filter(|event| event.rule().from.iter().any(|s| live.contains(s)))
        .map(|&event| (event, event.rule().samples(0).len()))
        .collect()
}

/// Each live event as likely as another, except that an order ends only
/// now and then, so most runs have time to suspend and resume.
fn step() -> impl Strategy<Value = Step> {
    let mut steps: Vec<(u32, BoxedStrategy<Step>)> = live_events()
        .into_iter()
        .map(|(event, samples)| {
            let weight = if event.rule().terminates() { 1 } else { 4 };
            let command = (0..samples).prop_map(move |sample| Step::Command { event, sample });
            (weight, command.boxed())
        })
        .collect();
    steps.push((5, Just(Step::Sweep).boxed()));
    steps.push((4, (0u64..1_500).prop_map(Step::Wait).boxed()));
    let kinds = proptest::sample::select(ActionType::ALL);
    steps.push((6, kinds.prop_map(Step::Customer).boxed()));
    steps.push((1, Just(Step::Restart).boxed()));
    proptest::strategy::Union::new_weighted(steps)
}

/// A reconciler on `store` and `sandbox`, as a (re)started daemon has it:
/// nothing in memory from an earlier one.
fn provisioner_on(store: &Store, sandbox: &Arc<Sandbox>) -> Arc<Provisioner> {
    let settings = Settings {
        max_attempts: 60,
        destroy_failed_droplets: false,
        ipv6: false,
        // Back-off after a refused action is a few milliseconds of wall
        // clock, so a refusal would not stall the run (it fails it below).
        poll_interval: Duration::from_millis(1),
        capacity_wait: Duration::from_secs(86_400),
        account_refresh: Duration::from_secs(300),
        action_max_attempts: 10,
    };
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    Provisioner::new(
        store.clone(),
        Arc::new(Fleet::single(sandbox.clone())),
        settings,
        metrics,
    )
}

/// A data file with one ACTIVE order whose droplet runs in the sandbox.
struct World {
    _dir: tempfile::TempDir,
    store: Store,
    sandbox: Arc<Sandbox>,
    provisioner: Arc<Provisioner>,
    order: Uuid,
}

impl World {
    fn with_active_order() -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let rules = Rules {
            policy: Policy {
                enforce: true,
                ..Policy::default()
            },
            ..Rules::default()
        };
        let store = Store::open_with(&dir.path().join("vpsd.redb"), 1 << 20, rules).expect("store");
        let sandbox = Arc::new(Sandbox::new(ACTION));
        let provisioner = provisioner_on(&store, &sandbox);
        let user = Actor::User("u".into());
        let change = lifecycle::create(test_order("u"), &user, now_millis());
        let order = change.order.id;
        let create = WriteOp::Create {
            change: Box::new(change),
            coupon: None,
            idempotency: None,
        };
        assert!(matches!(store.write_blocking(create), Ok(Ok(_))));
        let world = World {
            _dir: dir,
            store,
            sandbox,
            provisioner,
            order,
        };
        world.apply(Command::Pay { notes: None });
        for _ in 0..10 {
            world.provisioner.full_sweep();
            if world.record().order.status == OrderStatus::Active {
                return world;
            }
            world.sandbox.advance(ACTION);
        }
        panic!("never ACTIVE: {:?}", world.record());
    }

    /// An admin command; a refusal (wrong status, expired) is part of the game.
    fn apply(&self, command: Command) {
        self.apply_as(command, Actor::Admin(None), None);
    }

    fn apply_as(&self, command: Command, actor: Actor, owner: Option<String>) {
        let op = WriteOp::Apply {
            order_id: self.order,
            command,
            actor,
            owner,
            idempotency: None,
        };
        if let Err(e) = self.store.write_blocking(op) {
            panic!("storage failed: {e}");
        }
    }

    fn record(&self) -> OrderRecord {
        match self.store.get_order(self.order) {
            Ok(Some(record)) => record,
            other => panic!("order unreadable: {other:?}"),
        }
    }

    fn take(&mut self, step: &Step) {
        let now = now_millis();
        match step {
            Step::Command { event, sample } => {
                match event.rule().samples(now).into_iter().nth(*sample) {
                    Some(command) => self.apply(command),
                    None => panic!("{event:?} has no sample {sample}"),
                }
            }
            Step::Sweep => {
                self.provisioner.full_sweep();
            }
            Step::Wait(ms) => self.sandbox.advance(Duration::from_millis(*ms)),
            Step::Customer(kind) => {
                let ask = ActionAsk {
                    id: crate::domain::new_id(),
                    kind: *kind,
                    image: (*kind == ActionType::Rebuild).then(|| ImageChoice {
                        id: "debian-12".into(),
                        name: "Debian 12".into(),
                        slug: "debian-12-x64".into(),
                    }),
                    cooldown_ms: 0,
                };
                let owner = Some("u".to_string());
                let command = Command::RequestAction(Box::new(ask));
                self.apply_as(command, Actor::User("u".into()), owner);
            }
            Step::Restart => self.provisioner = provisioner_on(&self.store, &self.sandbox),
        }
    }

    /// The newest action id on the droplet (0 when it has none or is gone).
    fn newest_action(&self, droplet: u64) -> u64 {
        self.sandbox
            .droplet_actions(droplet)
            .ok()
            .and_then(|a| a.first().map(|a| a.id))
            .unwrap_or(0)
    }
}

/// A customer action's kind that leaves the server running.
fn powers_on(kind: &str) -> bool {
    ActionType::parse(kind).is_some_and(|k| k.target() == DropletStatus::Active)
}

/// The lifecycle wins (SPEC §14): nothing a customer asked powers on a
/// server after it was suspended or terminated (`since`: the newest action
/// on the droplet then), no two actions ever run at once, and no customer
/// action was sent into a refusal.
fn customer_rules_hold(
    world: &World,
    droplet: u64,
    since: Option<u64>,
) -> Result<(), TestCaseError> {
    let listed = world.sandbox.droplet_actions(droplet).unwrap_or_default();
    let running = listed
        .iter()
        .filter(|a| a.status == crate::cloud::ActionStatus::InProgress)
        .count();
    prop_assert!(running <= 1, "two actions run at once: {listed:?}");
    if let Some(mark) = since {
        let late = listed.iter().find(|a| a.id > mark && powers_on(&a.kind));
        prop_assert!(
            late.is_none(),
            "a customer action ran on a stopped server: {late:?}"
        );
    }
    let record = world.record();
    let last = record.task.and_then(|t| t.customer_action);
    prop_assert!(
        last.as_ref().is_none_or(|a| a.attempts == 0),
        "a customer action was refused by the provider: {last:?}"
    );
    Ok(())
}

/// What the droplet must end as for the order's last status: running while
/// ACTIVE, unless the customer's last completed action stopped it.
/// `last_resumed`: when the order last became ACTIVE.
fn wanted(record: &OrderRecord, last_resumed: crate::domain::time::Millis) -> DropletStatus {
    use crate::domain::customer_action::ActionState;
    let status = record.order.status;
    let by_customer = record
        .task
        .as_ref()
        .and_then(|t| t.customer_action.as_ref())
        .filter(|a| a.status == ActionState::Completed)
        .filter(|a| a.completed_at >= Some(last_resumed))
        .map(|a| a.kind.target());
    match status {
        OrderStatus::Active => by_customer.unwrap_or(DropletStatus::Active),
        OrderStatus::Suspended => DropletStatus::Off,
        OrderStatus::Terminated => DropletStatus::Deleted,
        other => panic!("an ACTIVE order cannot become {other:?}"),
    }
}

fn no_refused_action(record: &OrderRecord) -> Result<(), TestCaseError> {
    let code = record.task.as_ref().and_then(|t| t.error_code);
    prop_assert_ne!(
        code,
        Some(ProvisioningError::DropletActionFailed),
        "an action was sent while another ran: {:?}",
        record.task
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn the_droplet_ends_as_the_last_status_asked(
        steps in proptest::collection::vec(step(), 1..24),
    ) {
        let mut world = World::with_active_order();
        let droplet = world.record().task.and_then(|t| t.droplet_id()).expect("a droplet");
        let mut stopped_since = None;
        for step in &steps {
            let before = world.newest_action(droplet);
            world.take(step);
            let status = world.record().order.status;
            stopped_since = match status {
                OrderStatus::Active => None,
                _ => stopped_since.or(Some(before)),
            };
            no_refused_action(&world.record())?;
            customer_rules_hold(&world, droplet, stopped_since)?;
        }
        // Settle: time passes and the reconciler runs until nothing is owed.
        let mut settled = false;
        for _ in 0..20 {
            world.sandbox.advance(ACTION);
            world.provisioner.full_sweep();
            let record = world.record();
            no_refused_action(&record)?;
            if record.task.as_ref().is_some_and(|t| !t.owes_droplet_work()) {
                settled = true;
                break;
            }
        }
        prop_assert!(settled, "an action is still owed: {:?}", world.record().task);
        // Anything still running on the droplet finishes before it is judged.
        world.sandbox.advance(ACTION);
        let record = world.record();
        let history = world.store.history(world.order).expect("history");
        let last_resumed = history
            .iter()
            .filter(|h| h.new_status == crate::domain::HistoryStatus::Active)
            .map(|h| h.created_at)
            .max()
            .unwrap_or(0);
        let want = wanted(&record, last_resumed);
        let seen = match world.sandbox.get_droplet(droplet) {
            Ok(d) => d.status,
            Err(CloudError::NotFound) => DropletStatus::Deleted,
            Err(e) => panic!("sandbox: {e}"),
        };
        prop_assert_eq!(seen, want, "order {:?} after {:?}", record.order.status, steps);
        let shown = record.task.and_then(|t| t.droplet).map(|d| d.status);
        prop_assert_eq!(shown, Some(want), "the task shows what the droplet is");
    }
}
