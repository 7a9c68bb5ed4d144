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
    proptest::strategy::Union::new_weighted(steps)
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
        let provisioner = Provisioner::new(
            store.clone(),
            Arc::new(Fleet::single(sandbox.clone())),
            settings,
            metrics,
        );
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
        let op = WriteOp::Apply {
            order_id: self.order,
            command,
            actor: Actor::Admin(None),
            owner: None,
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

    fn take(&self, step: &Step) {
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
        }
    }
}

/// What the droplet must end as for the order's last status.
fn wanted(status: OrderStatus) -> DropletStatus {
    match status {
        OrderStatus::Active => DropletStatus::Active,
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
        let world = World::with_active_order();
        let droplet = world.record().task.and_then(|t| t.droplet_id()).expect("a droplet");
        for step in &steps {
            world.take(step);
            no_refused_action(&world.record())?;
        }
        // Settle: time passes and the reconciler runs until nothing is owed.
        let mut settled = false;
        for _ in 0..20 {
            world.sandbox.advance(ACTION);
            world.provisioner.full_sweep();
            let record = world.record();
            no_refused_action(&record)?;
            if record.task.as_ref().is_some_and(|t| t.action.is_none()) {
                settled = true;
                break;
            }
        }
        prop_assert!(settled, "an action is still owed: {:?}", world.record().task);
        // Anything still running on the droplet finishes before it is judged.
        world.sandbox.advance(ACTION);
        let record = world.record();
        let want = wanted(record.order.status);
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
