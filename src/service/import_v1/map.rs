//! One v1 order as vpsd stores it (SPEC §16), or why it cannot be. Pure:
//! the catalog's answer and the settings come in, a [`Change`] for the
//! store's import write goes out. Nothing is guessed: a value vpsd has no
//! place for is a reason not to import the order, reported with its id.

use crate::domain::droplet::{Droplet, DropletStatus};
use crate::domain::expiry::{self, Policy};
use crate::domain::lifecycle::{Change, CouponEffect, TaskEffect};
use crate::domain::period::start_paid_period;
use crate::domain::task::{ProvisioningError, ProvisioningTask};
use crate::domain::time::Millis;
use crate::domain::{
    Actor, DropletPlan, HistoryEntry, HistoryStatus, ItemType, Order, OrderItem, OrderStatus,
    PlanDuration, Pricing, ProvisioningStatus, Term,
};

use super::source::{V1History, V1Item, V1Order, V1Task};

/// What every imported order is placed with.
pub struct Settings<'a> {
    pub policy: &'a Policy,
    /// `cloud.digitalocean.default_region`: where an order v1 never placed
    /// will be created.
    pub region: &'a str,
    /// The account v1's one token is configured as: a droplet v1 made lives
    /// there.
    pub account: &'a str,
}

/// The droplet size and image slug the catalog gives the order's plan and
/// image today, when it knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogSlugs {
    pub size_slug: String,
    pub image_slug: String,
}

/// The statuses v1 had; a v1 database with another is not understood.
const V1_STATUSES: [OrderStatus; 6] = [
    OrderStatus::PendingPayment,
    OrderStatus::Paid,
    OrderStatus::Provisioning,
    OrderStatus::Active,
    OrderStatus::Failed,
    OrderStatus::Canceled,
];

pub fn map_order(
    v1: &V1Order,
    slugs: Option<&CatalogSlugs>,
    settings: &Settings<'_>,
    now: Millis,
) -> Result<Change, String> {
    let status = OrderStatus::parse(&v1.status)
        .filter(|s| V1_STATUSES.contains(s))
        .ok_or_else(|| format!("unknown status {:?}", v1.status))?;
    let duration = PlanDuration::parse(&v1.duration)
        .ok_or_else(|| format!("unknown duration {:?}", v1.duration))?;
    if must_have_been_paid(status) && v1.paid_at.is_none() {
        return Err(format!("status {status} without paid_at"));
    }
    let history = v1
        .history
        .iter()
        .map(history_row)
        .collect::<Result<Vec<_>, _>>()?;
    let mut order = Order {
        id: v1.id,
        seq: 0,
        user_id: v1.user_id.clone(),
        status,
        plan_id: v1.plan_id.clone(),
        plan_name: v1.plan_name.clone(),
        image_id: v1.image_id.clone(),
        image_name: v1.image_name.clone(),
        duration,
        pricing: pricing(v1)?,
        coupon_counted: false,
        items: v1.items.iter().map(item).collect::<Result<Vec<_>, _>>()?,
        droplet: droplet_plan(v1, slugs, settings.region)?,
        paid_at: v1.paid_at,
        created_at: v1.created_at,
        updated_at: v1.updated_at,
        history_len: u32::try_from(history.len()).map_err(|_| "too many history rows")?,
        term: Term::default(),
        auto_renew: false,
    };
    if status == OrderStatus::Active {
        let activated = history
            .iter()
            .rev()
            .find(|row| row.new_status == HistoryStatus::Active)
            .map(|row| row.created_at)
            .ok_or("ACTIVE without a history row to ACTIVE (its activation time)")?;
        start_paid_period(&mut order.term, activated, duration);
        order.term.next_due = expiry::due_of(&order, settings.policy);
    }
    let task = task_for(&order, v1.task.as_ref(), settings.account, now)?;
    Ok(Change {
        order,
        previous_status: None,
        previous_due: None,
        history,
        task: task.map_or(TaskEffect::Unchanged, |t| TaskEffect::Write(Box::new(t))),
        coupon: CouponEffect::None,
        events: Vec::new(),
    })
}

/// The statuses whose order must have been paid (SPEC §1: `paidAt` is set
/// exactly when the order has been PAID).
fn must_have_been_paid(status: OrderStatus) -> bool {
    matches!(
        status,
        OrderStatus::Paid | OrderStatus::Provisioning | OrderStatus::Active
    )
}

fn amount(name: &str, value: i64) -> Result<u64, String> {
    u64::try_from(value).map_err(|_| format!("negative {name} ({value})"))
}

fn pricing(v1: &V1Order) -> Result<Pricing, String> {
    Ok(Pricing {
        base_price: amount("base_price", v1.base_price)?,
        promo_discount: amount("promo_discount", v1.promo_discount)?,
        coupon_code: v1.coupon_code.clone(),
        coupon_discount: amount("coupon_discount", v1.coupon_discount)?,
        final_price: amount("final_price", v1.final_price)?,
        currency: v1.currency.clone(),
    })
}

fn item(v1: &V1Item) -> Result<OrderItem, String> {
    let quantity = u32::try_from(v1.quantity)
        .map_err(|_| format!("item {}: quantity {} out of range", v1.id, v1.quantity))?;
    Ok(OrderItem {
        id: v1.id,
        item_type: ItemType::parse(&v1.item_type)
            .ok_or_else(|| format!("item {}: unknown item_type {:?}", v1.id, v1.item_type))?,
        reference_id: v1.reference_id.clone(),
        description: v1.description.clone(),
        unit_price: amount("unit_price", v1.unit_price)?,
        quantity,
        total_price: amount("total_price", v1.total_price)?,
        created_at: v1.created_at,
    })
}

fn history_row(v1: &V1History) -> Result<HistoryEntry, String> {
    let previous_status =
        match v1.previous_status.as_str() {
            "" => None,
            text => Some(OrderStatus::parse(text).ok_or_else(|| {
                format!("history row {}: unknown previous_status {text:?}", v1.id)
            })?),
        };
    let new_status = HistoryStatus::parse(&v1.new_status).ok_or_else(|| {
        format!(
            "history row {}: unknown new_status {:?}",
            v1.id, v1.new_status
        )
    })?;
    let actor = Actor::parse(&v1.actor).ok_or_else(|| {
        format!(
            "history row {}: actor {:?} is none of user:ID, admin, admin:ID, system",
            v1.id, v1.actor
        )
    })?;
    Ok(HistoryEntry {
        id: v1.id,
        previous_status,
        new_status,
        actor,
        reason: v1.reason.clone(),
        metadata: v1.metadata.clone(),
        created_at: v1.created_at,
    })
}

/// What v1's task asked DigitalOcean for, else what the catalog gives the
/// plan and image today. Only an order that can never need a droplet again
/// (CANCELED) may have neither.
fn droplet_plan(
    v1: &V1Order,
    slugs: Option<&CatalogSlugs>,
    region: &str,
) -> Result<DropletPlan, String> {
    let task = v1.task.as_ref();
    let hostname = task
        .and_then(|t| t.droplet_name.clone())
        .unwrap_or_else(|| crate::backend::service::pricing::default_hostname(&v1.id));
    let asked = task.and_then(|t| {
        let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        Some((
            nonempty(&t.do_region)?,
            nonempty(&t.do_size)?,
            nonempty(&t.do_image)?,
        ))
    });
    let (region, size_slug, image_slug) = match (asked, slugs) {
        (Some(asked), _) => asked,
        (None, Some(s)) => (region.to_string(), s.size_slug.clone(), s.image_slug.clone()),
        (None, None) if v1.status == OrderStatus::Canceled.as_str() => {
            (String::new(), String::new(), String::new())
        }
        (None, None) => {
            return Err(format!(
                "no droplet size: v1 recorded none and the catalog has no size for plan {:?} with image {:?}",
                v1.plan_id, v1.image_id
            ))
        }
    };
    Ok(DropletPlan {
        region,
        size_slug,
        image_slug,
        hostname,
        ssh_public_keys: Vec::new(),
    })
}

/// The task the reconciler carries on with. A droplet v1 recorded is
/// followed by its id; without one the order is provisioned as a fresh
/// PAID one is (the order's tag first, so nothing is made twice by vpsd).
fn task_for(
    order: &Order,
    v1: Option<&V1Task>,
    account: &str,
    now: Millis,
) -> Result<Option<ProvisioningTask>, String> {
    let never_paid = matches!(
        order.status,
        OrderStatus::PendingPayment | OrderStatus::Canceled
    );
    let Some(v1) = v1 else {
        return match order.status {
            OrderStatus::Paid | OrderStatus::Provisioning => {
                Ok(Some(ProvisioningTask::for_paid_order(order, now)))
            }
            OrderStatus::Active => Err("ACTIVE without a provisioning task (no droplet)".into()),
            _ => Ok(None),
        };
    };
    if never_paid {
        return Err(format!(
            "status {} but a provisioning task {} exists",
            order.status, v1.id
        ));
    }
    let droplet = droplet_of(v1)?;
    if order.status == OrderStatus::Active && droplet.is_none() {
        return Err(format!("ACTIVE but task {} recorded no droplet_id", v1.id));
    }
    let mut task = ProvisioningTask::for_paid_order(order, v1.created_at);
    task.id = v1.id;
    task.attempts = u32::try_from(v1.attempts).unwrap_or(0);
    task.started_at = v1.started_at;
    task.completed_at = v1.completed_at;
    task.updated_at = v1.updated_at;
    task.status = match (order.status, &droplet) {
        (OrderStatus::Active, _) => ProvisioningStatus::Success,
        (OrderStatus::Failed, _) => ProvisioningStatus::Failed,
        (_, Some(_)) => ProvisioningStatus::InProgress,
        (_, None) => ProvisioningStatus::Pending,
    };
    if droplet.is_some() {
        task.do_account = Some(account.to_string());
    }
    task.droplet = droplet;
    if order.status == OrderStatus::Failed {
        (task.error_code, task.error_message) = failure(v1)?;
    }
    Ok(Some(task))
}

fn droplet_of(v1: &V1Task) -> Result<Option<Droplet>, String> {
    let Some(id) = v1.droplet_id.as_deref().filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let id: u64 = id
        .parse()
        .map_err(|_| format!("task {}: droplet_id {id:?} is not a DigitalOcean id", v1.id))?;
    let status = match v1.droplet_status.as_deref() {
        None | Some("") => DropletStatus::Unknown,
        Some(text) => DropletStatus::parse(text).unwrap_or(DropletStatus::Unknown),
    };
    Ok(Some(Droplet {
        id,
        name: v1.droplet_name.clone().unwrap_or_default(),
        status,
        tags: v1.droplet_tags.clone(),
        created_at: v1.droplet_created_at,
        ipv4_public: v1.ipv4_public.clone(),
        ipv4_private: v1.ipv4_private.clone(),
        ipv6_public: None,
    }))
}

type Failure = (Option<ProvisioningError>, Option<String>);

/// A FAILED task's code and message. v1's codes are vpsd's (SPEC §2); one
/// vpsd does not know is refused rather than renamed.
fn failure(v1: &V1Task) -> Result<Failure, String> {
    let code = match v1.error_code.as_deref() {
        None | Some("") => None,
        Some(text) => Some(
            ProvisioningError::parse(text)
                .ok_or_else(|| format!("task {}: unknown error_code {text:?}", v1.id))?,
        ),
    };
    Ok((code, v1.error_message.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::time::parse_rfc3339;

    fn at(text: &str) -> Millis {
        parse_rfc3339(text).unwrap_or_default()
    }

    fn v1(status: &str) -> V1Order {
        V1Order {
            id: uuid::Uuid::from_u128(7),
            user_id: "alice".into(),
            plan_id: "vps-basic".into(),
            plan_name: "VPS Basic".into(),
            image_id: "ubuntu-22-04".into(),
            image_name: "Ubuntu 22.04".into(),
            duration: "QUARTERLY".into(),
            base_price: 100,
            promo_discount: 0,
            coupon_code: None,
            coupon_discount: 0,
            final_price: 100,
            currency: "IDR".into(),
            status: status.into(),
            created_at: at("2026-01-31T10:00:00.123Z"),
            updated_at: at("2026-01-31T10:00:00.123Z"),
            paid_at: None,
            items: Vec::new(),
            history: Vec::new(),
            task: None,
        }
    }

    fn row(to: &str, actor: &str, when: &str) -> V1History {
        V1History {
            id: uuid::Uuid::from_u128(9),
            previous_status: String::new(),
            new_status: to.into(),
            actor: actor.into(),
            reason: None,
            metadata: None,
            created_at: at(when),
        }
    }

    fn settings(policy: &Policy) -> Settings<'_> {
        Settings {
            policy,
            region: "sgp1",
            account: "default",
        }
    }

    fn slugs() -> CatalogSlugs {
        CatalogSlugs {
            size_slug: "s-1vcpu-1gb".into(),
            image_slug: "ubuntu-22-04-x64".into(),
        }
    }

    #[test]
    fn an_active_order_starts_its_period_at_its_active_row_in_calendar_months() {
        let policy = Policy::default();
        let mut order = v1("ACTIVE");
        order.paid_at = Some(at("2026-01-31T10:01:00Z"));
        order.history = vec![
            row("PENDING_PAYMENT", "user:alice", "2026-01-31T10:00:00.123Z"),
            row("ACTIVE", "system", "2026-01-31T10:05:00.456Z"),
        ];
        order.task = Some(V1Task {
            id: uuid::Uuid::from_u128(11),
            status: "SUCCESS".into(),
            do_region: Some("nyc3".into()),
            do_size: Some("s-2vcpu-2gb".into()),
            do_image: Some("debian-12-x64".into()),
            droplet_id: Some("4242".into()),
            droplet_name: Some("web-1".into()),
            ipv4_public: Some("203.0.113.9".into()),
            ipv4_private: None,
            droplet_status: Some("active".into()),
            droplet_tags: Vec::new(),
            droplet_created_at: None,
            error_code: None,
            error_message: None,
            attempts: 3,
            started_at: None,
            completed_at: None,
            created_at: 0,
            updated_at: 0,
        });
        let change = map_order(&order, Some(&slugs()), &settings(&policy), 0).unwrap();
        let term = &change.order.term;
        assert_eq!(term.activated_at, Some(at("2026-01-31T10:05:00.456Z")));
        assert_eq!(term.expires_at, Some(at("2026-04-30T10:05:00.456Z")));
        assert!(term.next_due.is_some());
        // What v1 asked DigitalOcean for wins over today's catalog.
        assert_eq!(change.order.droplet.size_slug, "s-2vcpu-2gb");
        assert_eq!(change.order.droplet.hostname, "web-1");
        let TaskEffect::Write(task) = &change.task else {
            panic!("a task")
        };
        assert_eq!(task.droplet.as_ref().map(|d| d.id), Some(4242));
        assert_eq!(task.do_account.as_deref(), Some("default"));
        assert_eq!(task.status, ProvisioningStatus::Success);
    }

    #[test]
    fn what_vpsd_has_no_place_for_is_refused_with_why() {
        let policy = Policy::default();
        let s = settings(&policy);
        let refused = |order: V1Order, slugs: Option<&CatalogSlugs>| {
            map_order(&order, slugs, &s, 0).unwrap_err()
        };
        let mut negative = v1("PENDING_PAYMENT");
        negative.final_price = -5;
        assert_eq!(
            refused(negative, Some(&slugs())),
            "negative final_price (-5)"
        );
        let mut stranger = v1("PENDING_PAYMENT");
        stranger.history = vec![row(
            "PENDING_PAYMENT",
            "billing-bot",
            "2026-01-31T10:00:00Z",
        )];
        assert!(refused(stranger, Some(&slugs())).contains("actor \"billing-bot\""));
        let mut unpaid = v1("PAID");
        unpaid.paid_at = None;
        assert_eq!(
            refused(unpaid, Some(&slugs())),
            "status PAID without paid_at"
        );
        let mut no_size = v1("PAID");
        no_size.paid_at = Some(0);
        assert!(refused(no_size, None).starts_with("no droplet size"));
        let mut never_active = v1("ACTIVE");
        never_active.paid_at = Some(0);
        assert!(refused(never_active, Some(&slugs())).contains("history row to ACTIVE"));
    }

    #[test]
    fn a_paid_order_without_a_task_gets_the_task_a_fresh_payment_would() {
        let policy = Policy::default();
        let mut order = v1("PAID");
        order.paid_at = Some(at("2026-01-31T10:01:00Z"));
        let change = map_order(&order, Some(&slugs()), &settings(&policy), 5).unwrap();
        let TaskEffect::Write(task) = &change.task else {
            panic!("a task")
        };
        assert_eq!(task.status, ProvisioningStatus::Pending);
        assert_eq!(task.droplet, None);
        assert_eq!(
            task.do_account, None,
            "placed by the fleet like any new order"
        );
        assert_eq!(change.order.droplet.region, "sgp1");
    }
}
