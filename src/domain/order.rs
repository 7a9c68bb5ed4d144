//! The order aggregate: what was bought, at what price, and where it stands.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::time::Millis;
use super::wire::wire_enum;

/// The most characters a history row's `reason` (from `notes` or `reason`)
/// keeps: every status change writes a row, so unbounded text would let
/// repetition grow the data file without limit (SPEC §12). Requests with more
/// are refused; text vpsd writes itself (a provider's message) is cut.
pub const MAX_FREE_TEXT: usize = 1000;

wire_enum!(
    /// Where an order is in its life (SPEC §1). Stored as its index in `ALL`,
    /// so variants are only ever appended.
    OrderStatus {
        PendingPayment => "PENDING_PAYMENT",
        Paid => "PAID",
        Provisioning => "PROVISIONING",
        Active => "ACTIVE",
        Failed => "FAILED",
        Canceled => "CANCELED",
        Suspended => "SUSPENDED",
        Terminated => "TERMINATED",
    }
);

impl OrderStatus {
    /// A compact, stable code used in index keys.
    pub fn code(self) -> u8 {
        match self {
            OrderStatus::PendingPayment => 0,
            OrderStatus::Paid => 1,
            OrderStatus::Provisioning => 2,
            OrderStatus::Active => 3,
            OrderStatus::Failed => 4,
            OrderStatus::Canceled => 5,
            OrderStatus::Suspended => 6,
            OrderStatus::Terminated => 7,
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, OrderStatus::Canceled | OrderStatus::Terminated)
    }
}

wire_enum!(
    /// Why an order is SUSPENDED (SPEC §9).
    text SuspendReason {
        Expired => "EXPIRED",
        Admin => "ADMIN",
    }
);

wire_enum!(
    /// Why an order was TERMINATED (SPEC §9).
    text TerminationReason {
        UserDeleted => "USER_DELETED",
        ExpiredNoRenewal => "EXPIRED_NO_RENEWAL",
        AdminTerminated => "ADMIN_TERMINATED",
        PolicyViolation => "POLICY_VIOLATION",
    }
);

impl TerminationReason {
    /// Why an operator may terminate; the other reasons are the owner's and
    /// the system's. The API's body and the console's form offer these.
    pub const BY_OPERATOR: [TerminationReason; 2] = [
        TerminationReason::AdminTerminated,
        TerminationReason::PolicyViolation,
    ];
}

wire_enum!(
    /// How a renewal or expiry change came about (SPEC §9).
    text RenewalType {
        ManualRenewal => "MANUAL_RENEWAL",
        AutoRenewal => "AUTO_RENEWAL",
        AdminExtension => "ADMIN_EXTENSION",
    }
);

impl RenewalType {
    /// What a renewal records; an expiry change records `ADMIN_EXTENSION`
    /// by itself. The API's body and the console's form offer these.
    pub const BY_RENEWAL: [RenewalType; 2] = [RenewalType::ManualRenewal, RenewalType::AutoRenewal];
}

wire_enum!(
    PlanDuration {
        Monthly => "MONTHLY",
        Quarterly => "QUARTERLY",
        SemiAnnual => "SEMI_ANNUAL",
        Annual => "ANNUAL",
    }
);

wire_enum!(
    ItemType {
        Plan => "PLAN",
        Image => "IMAGE",
        Addon => "ADDON",
    }
);

wire_enum!(
    ProvisioningStatus {
        Pending => "PENDING",
        InProgress => "IN_PROGRESS",
        Success => "SUCCESS",
        Failed => "FAILED",
    }
);

/// The price snapshot taken at order time. Amounts are integers in the currency's
/// smallest unit; they are never recomputed after the order is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pricing {
    pub base_price: u64,
    pub promo_discount: u64,
    pub coupon_code: Option<String>,
    pub coupon_discount: u64,
    pub final_price: u64,
    pub currency: String,
}

impl Pricing {
    /// `finalPrice = max(0, base - promo - coupon)`, with the coupon discount capped
    /// so the recorded parts always add up to the recorded total.
    pub fn compute(
        base_price: u64,
        price_after_promo: u64,
        coupon: Option<(String, u64)>,
        currency: String,
    ) -> Pricing {
        let after_promo = price_after_promo.min(base_price);
        let promo_discount = base_price - after_promo;
        let (coupon_code, coupon_discount) = match coupon {
            Some((code, discount)) => (Some(code), discount.min(after_promo)),
            None => (None, 0),
        };
        Pricing {
            base_price,
            promo_discount,
            coupon_code,
            coupon_discount,
            final_price: after_promo - coupon_discount,
            currency,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderItem {
    pub id: Uuid,
    pub item_type: ItemType,
    pub reference_id: String,
    pub description: String,
    pub unit_price: u64,
    pub quantity: u32,
    pub total_price: u64,
    pub created_at: Millis,
}

/// Where and what to provision, resolved from the catalog and config when the
/// order is created, so later catalog edits never change a paid order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropletPlan {
    pub region: String,
    pub size_slug: String,
    pub image_slug: String,
    pub hostname: String,
    pub ssh_public_keys: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: Uuid,
    /// Global commit sequence: orders sort newest-first by it in every index,
    /// which is exact even when two orders share a millisecond.
    pub seq: u64,
    pub user_id: String,
    pub status: OrderStatus,
    pub plan_id: String,
    pub plan_name: String,
    pub image_id: String,
    pub image_name: String,
    pub duration: PlanDuration,
    pub pricing: Pricing,
    /// True when the coupon's redemption is counted in the data file (embedded
    /// catalog limits); cancelling an unpaid order releases it.
    pub coupon_counted: bool,
    pub items: Vec<OrderItem>,
    pub droplet: DropletPlan,
    /// Set exactly when the order has been PAID (SPEC §1 property).
    pub paid_at: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// Number of history rows written so far; the next row's key.
    pub history_len: u32,
    /// Everything after ACTIVE (SPEC §9).
    pub term: Term,
    /// The customer's wish that the billing system renew this order by
    /// itself (SPEC §14). Only stored and shown: vpsd never charges.
    pub auto_renew: bool,
}

/// The paid period and what happened to it. All empty until ACTIVE.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Term {
    pub activated_at: Option<Millis>,
    pub expires_at: Option<Millis>,
    pub suspended_at: Option<Millis>,
    pub suspend_reason: Option<SuspendReason>,
    /// Set exactly when the order is TERMINATED (SPEC §1 property).
    pub terminated_at: Option<Millis>,
    pub termination_reason: Option<TerminationReason>,
    /// Reminder thresholds (ms before expiry) already sent for this `expires_at`.
    pub reminded: Vec<Millis>,
    /// When the reconciler must next look at this order (the `due` index key).
    pub next_due: Option<Millis>,
    pub renewals: Vec<Renewal>,
}

/// One renewal or expiry change, shown in the admin detail's `renewals`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Renewal {
    pub id: Uuid,
    pub renewal_type: RenewalType,
    pub periods: u32,
    pub amount: u64,
    pub previous_expiry: Option<Millis>,
    pub new_expiry: Millis,
    #[serde(with = "as_text")]
    pub actor: Actor,
    pub created_at: Millis,
}

wire_enum!(
    /// What a history row records: a new order status, or a payment event that
    /// leaves the status as it was (PAYMENT_FAILED). Stored as its wire name.
    text HistoryStatus {
        PendingPayment => "PENDING_PAYMENT",
        Paid => "PAID",
        Provisioning => "PROVISIONING",
        Active => "ACTIVE",
        Failed => "FAILED",
        Canceled => "CANCELED",
        PaymentFailed => "PAYMENT_FAILED",
        Suspended => "SUSPENDED",
        Terminated => "TERMINATED",
        Renewed => "RENEWED",
        ExpiryChanged => "EXPIRY_CHANGED",
    }
);

impl From<OrderStatus> for HistoryStatus {
    fn from(status: OrderStatus) -> HistoryStatus {
        match status {
            OrderStatus::PendingPayment => HistoryStatus::PendingPayment,
            OrderStatus::Paid => HistoryStatus::Paid,
            OrderStatus::Provisioning => HistoryStatus::Provisioning,
            OrderStatus::Active => HistoryStatus::Active,
            OrderStatus::Failed => HistoryStatus::Failed,
            OrderStatus::Canceled => HistoryStatus::Canceled,
            OrderStatus::Suspended => HistoryStatus::Suspended,
            OrderStatus::Terminated => HistoryStatus::Terminated,
        }
    }
}

impl HistoryStatus {
    /// The order status this row moved to; `None` for an event row.
    pub fn status(self) -> Option<OrderStatus> {
        OrderStatus::parse(self.as_str())
    }
}

/// One row of an order's status history. The status, event and actor fields
/// are typed here and kept as their wire text in the data file, so rows
/// written before they were typed read unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub id: Uuid,
    /// `None` only on the first row (rendered as `""`).
    #[serde(with = "previous_status_text")]
    pub previous_status: Option<OrderStatus>,
    pub new_status: HistoryStatus,
    #[serde(with = "as_text")]
    pub actor: Actor,
    pub reason: Option<String>,
    /// JSON object text; kept as text because bincode cannot carry `serde_json::Value`.
    pub metadata: Option<String>,
    pub created_at: Millis,
}

/// Who caused a change (SPEC §1 actors).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Actor {
    User(String),
    Admin(Option<String>),
    System,
}

impl Actor {
    /// `user:{sub}`, `admin`, `admin:{id}` or `system`.
    pub fn render(&self) -> String {
        match self {
            Actor::User(sub) => format!("user:{sub}"),
            Actor::Admin(None) => "admin".to_string(),
            Actor::Admin(Some(id)) => format!("admin:{id}"),
            Actor::System => "system".to_string(),
        }
    }

    pub fn parse(text: &str) -> Option<Actor> {
        match text {
            "system" => Some(Actor::System),
            "admin" => Some(Actor::Admin(None)),
            _ => {
                if let Some(sub) = text.strip_prefix("user:") {
                    Some(Actor::User(sub.to_string()))
                } else {
                    text.strip_prefix("admin:")
                        .map(|id| Actor::Admin(Some(id.to_string())))
                }
            }
        }
    }
}

/// Types stored as their wire text: parse errors surface as decode errors.
trait WireText: Sized {
    fn to_text(&self) -> std::borrow::Cow<'_, str>;
    fn from_text(text: &str) -> Option<Self>;
}

impl WireText for Actor {
    fn to_text(&self) -> std::borrow::Cow<'_, str> {
        self.render().into()
    }
    fn from_text(text: &str) -> Option<Self> {
        Actor::parse(text)
    }
}

mod as_text {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<T: super::WireText, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_text())
    }

    pub fn deserialize<'de, T: super::WireText, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
        let text = String::deserialize(d)?;
        T::from_text(&text).ok_or_else(|| D::Error::custom(format!("unknown value {text:?}")))
    }
}

mod previous_status_text {
    use super::OrderStatus;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<OrderStatus>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.map(OrderStatus::as_str).unwrap_or(""))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OrderStatus>, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Ok(None);
        }
        OrderStatus::parse(&text)
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("unknown status {text:?}")))
    }
}

/// A minimal unpaid order for unit tests of the layers above.
#[cfg(test)]
pub(crate) fn test_order(user: &str) -> Order {
    Order {
        id: Uuid::new_v4(),
        seq: 0,
        user_id: user.into(),
        status: OrderStatus::PendingPayment,
        plan_id: "p".into(),
        plan_name: "P".into(),
        image_id: "i".into(),
        image_name: "I".into(),
        duration: PlanDuration::Monthly,
        pricing: Pricing::compute(100, 100, None, "IDR".into()),
        coupon_counted: false,
        items: vec![],
        droplet: DropletPlan {
            region: "sgp1".into(),
            size_slug: "s".into(),
            image_slug: "i".into(),
            hostname: "h".into(),
            ssh_public_keys: vec![],
        },
        paid_at: None,
        created_at: 1,
        updated_at: 1,
        history_len: 0,
        term: Term::default(),
        auto_renew: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_their_wire_names() {
        for s in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(*s));
        }
        for d in PlanDuration::ALL {
            assert_eq!(PlanDuration::parse(d.as_str()), Some(*d));
        }
        assert_eq!(OrderStatus::parse("paid"), None);
    }

    #[test]
    fn pricing_snapshot_matches_the_spec_example() {
        let p = Pricing::compute(
            150_000,
            135_000,
            Some(("HEMAT20".into(), 27_000)),
            "IDR".into(),
        );
        assert_eq!(p.promo_discount, 15_000);
        assert_eq!(p.coupon_discount, 27_000);
        assert_eq!(p.final_price, 108_000);
    }

    #[test]
    fn coupon_never_takes_the_price_below_zero() {
        let p = Pricing::compute(100, 80, Some(("BIG".into(), 500)), "IDR".into());
        assert_eq!(p.coupon_discount, 80);
        assert_eq!(p.final_price, 0);
    }
}
