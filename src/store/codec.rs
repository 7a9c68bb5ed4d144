//! Record encoding: one format-version byte, then bincode (standard config).
//!
//! bincode carries no field names, so a changed record layout gets a new version
//! and an explicit migration, never a silent misread. Each stored type says which
//! version it writes and how to read the older ones ([`Record`]); records are
//! migrated lazily, when read, and written back in the current layout by the
//! next change. A version newer than this build, or one its type does not list,
//! is reported as corrupt.
//!
//! Enums inside records keep old records readable when variants are added:
//! the order enums are stored as their variant index (append only), droplet
//! status and provisioning error codes as their wire text (see
//! [`crate::domain::wire`]).
//!
//! Versions: `HistoryEntry` 1; `Order` 3 (v1 had no `term`: an ACTIVE v1 order
//! gets its period from its history when the file is opened, see
//! `store::migrate`; v2 had no `auto_renew`, read as off); `ProvisioningTask` 2 (v1 kept the
//! droplet as flat fields and error codes as free text); `IdempotencyRecord` 3
//! (v1 kept the rendered HTTP response, replayed as stored; v2 embedded the
//! order in its v2 layout).

use serde::{de::DeserializeOwned, Serialize};

use crate::backend::store::IdempotencyRecord;
use crate::domain::task::ProvisioningTask;
use crate::domain::{HistoryEntry, Order};

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("record is empty")]
    Empty,
    #[error("record format version {0} is not supported by this vpsd")]
    UnknownVersion(u8),
    #[error("record does not decode: {0}")]
    Malformed(String),
    #[error("record has {0} trailing bytes")]
    Trailing(usize),
}

/// A type stored as a versioned record.
pub trait Record: Serialize + DeserializeOwned {
    /// The layout this build writes. Bump it whenever the bincode layout
    /// changes (a field added, removed, reordered or retyped), and teach
    /// [`Record::decode_legacy`] the previous one.
    const VERSION: u8;

    /// Decodes a body written in an older layout (`version < VERSION`),
    /// typically by decoding a frozen copy of the old struct with
    /// [`decode_body`] and converting it. The default knows no older layout.
    fn decode_legacy(version: u8, body: &[u8]) -> Result<Self, CodecError> {
        let _ = body;
        Err(CodecError::UnknownVersion(version))
    }
}

impl Record for Order {
    const VERSION: u8 = 3;

    fn decode_legacy(version: u8, body: &[u8]) -> Result<Self, CodecError> {
        match version {
            1 => Ok(decode_body::<legacy::OrderV1>(body)?.migrate()),
            2 => Ok(decode_body::<legacy::OrderV2>(body)?.migrate()),
            other => Err(CodecError::UnknownVersion(other)),
        }
    }
}

impl Record for crate::domain::customer_action::CustomerAction {
    const VERSION: u8 = 1;
}

impl Record for HistoryEntry {
    const VERSION: u8 = 1;
}

impl Record for IdempotencyRecord {
    const VERSION: u8 = 3;

    fn decode_legacy(version: u8, body: &[u8]) -> Result<Self, CodecError> {
        match version {
            1 => Ok(decode_body::<legacy::IdempotencyV1>(body)?.migrate()),
            2 => Ok(decode_body::<legacy::IdempotencyV2>(body)?.migrate()),
            other => Err(CodecError::UnknownVersion(other)),
        }
    }
}

impl Record for ProvisioningTask {
    const VERSION: u8 = 4;

    fn decode_legacy(version: u8, body: &[u8]) -> Result<Self, CodecError> {
        match version {
            1 => decode_body::<legacy::TaskV1>(body)?.migrate(),
            2 => Ok(decode_body::<legacy::TaskV2>(body)?.migrate()),
            3 => Ok(decode_body::<legacy::TaskV3>(body)?.migrate()),
            other => Err(CodecError::UnknownVersion(other)),
        }
    }
}

pub fn encode<T: Record>(value: &T) -> Vec<u8> {
    let mut out = vec![T::VERSION];
    // Encoding plain structs of strings and integers into a Vec cannot fail;
    // an error here would be a bug in a serde derive, so it is reported as an
    // empty body that decode rejects rather than a panic.
    if bincode::serde::encode_into_std_write(value, &mut out, bincode::config::standard()).is_err()
    {
        out.truncate(1);
    }
    out
}

pub fn decode<T: Record>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version == T::VERSION {
        decode_body(body)
    } else if version < T::VERSION {
        T::decode_legacy(version, body)
    } else {
        Err(CodecError::UnknownVersion(version))
    }
}

/// Decodes a record body (after the version byte), insisting that all of it
/// is used: a shorter layout read as a longer one must fail, not half-succeed.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, CodecError> {
    let (value, used) = bincode::serde::decode_from_slice(body, bincode::config::standard())
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if used != body.len() {
        return Err(CodecError::Trailing(body.len() - used));
    }
    Ok(value)
}

/// Frozen copies of older record layouts. Never edit one: it describes bytes
/// already on disk.
pub(crate) mod legacy {
    use serde::{Deserialize, Serialize};
    use uuid::Uuid;

    /// `Order` v1: everything before the paid period was kept (no `term`).
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub(super) struct OrderV1 {
        pub id: Uuid,
        pub seq: u64,
        pub user_id: String,
        pub status: crate::domain::OrderStatus,
        pub plan_id: String,
        pub plan_name: String,
        pub image_id: String,
        pub image_name: String,
        pub duration: crate::domain::PlanDuration,
        pub pricing: crate::domain::Pricing,
        pub coupon_counted: bool,
        pub items: Vec<crate::domain::OrderItem>,
        pub droplet: crate::domain::DropletPlan,
        pub paid_at: Option<Millis>,
        pub created_at: Millis,
        pub updated_at: Millis,
        pub history_len: u32,
    }

    impl OrderV1 {
        pub(super) fn migrate(self) -> crate::domain::Order {
            crate::domain::Order {
                id: self.id,
                seq: self.seq,
                user_id: self.user_id,
                status: self.status,
                plan_id: self.plan_id,
                plan_name: self.plan_name,
                image_id: self.image_id,
                image_name: self.image_name,
                duration: self.duration,
                pricing: self.pricing,
                coupon_counted: self.coupon_counted,
                items: self.items,
                droplet: self.droplet,
                paid_at: self.paid_at,
                created_at: self.created_at,
                updated_at: self.updated_at,
                history_len: self.history_len,
                term: crate::domain::Term::default(),
                auto_renew: false,
            }
        }
    }

    /// `Order` v2: as now, before the customer's auto-renew wish was kept.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub(crate) struct OrderV2 {
        pub id: Uuid,
        pub seq: u64,
        pub user_id: String,
        pub status: crate::domain::OrderStatus,
        pub plan_id: String,
        pub plan_name: String,
        pub image_id: String,
        pub image_name: String,
        pub duration: crate::domain::PlanDuration,
        pub pricing: crate::domain::Pricing,
        pub coupon_counted: bool,
        pub items: Vec<crate::domain::OrderItem>,
        pub droplet: crate::domain::DropletPlan,
        pub paid_at: Option<Millis>,
        pub created_at: Millis,
        pub updated_at: Millis,
        pub history_len: u32,
        pub term: crate::domain::Term,
    }

    impl OrderV2 {
        /// Nobody could ask for auto-renewal before v3: off.
        pub(crate) fn migrate(self) -> crate::domain::Order {
            crate::domain::Order {
                id: self.id,
                seq: self.seq,
                user_id: self.user_id,
                status: self.status,
                plan_id: self.plan_id,
                plan_name: self.plan_name,
                image_id: self.image_id,
                image_name: self.image_name,
                duration: self.duration,
                pricing: self.pricing,
                coupon_counted: self.coupon_counted,
                items: self.items,
                droplet: self.droplet,
                paid_at: self.paid_at,
                created_at: self.created_at,
                updated_at: self.updated_at,
                history_len: self.history_len,
                term: self.term,
                auto_renew: false,
            }
        }
    }

    /// `IdempotencyRecord` v2: outcomes kept as data, the order in its v2
    /// layout. Enum variants decode by index, so the order of these mirrors
    /// `Replay`'s and `Result`'s.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub(crate) struct IdempotencyV2 {
        pub fingerprint: [u8; 32],
        pub outcome: ReplayV2,
        pub expires_at: i64,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub(crate) enum ReplayV2 {
        Outcome(Box<Result<RecordV2, crate::error::AppError>>),
        Legacy(crate::domain::replay::LegacyReply),
    }

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub(crate) struct RecordV2 {
        pub order: OrderV2,
        /// Tasks of their time: v3, before customer actions.
        pub task: Option<TaskV3>,
    }

    impl IdempotencyV2 {
        pub(super) fn migrate(self) -> crate::backend::store::IdempotencyRecord {
            use crate::domain::replay::Replay;
            let outcome = match self.outcome {
                ReplayV2::Outcome(outcome) => {
                    Replay::Outcome(Box::new(outcome.map(|r| crate::domain::OrderRecord {
                        order: r.order.migrate(),
                        task: r.task.map(TaskV3::migrate),
                    })))
                }
                ReplayV2::Legacy(reply) => Replay::Legacy(reply),
            };
            crate::backend::store::IdempotencyRecord {
                fingerprint: self.fingerprint,
                outcome,
                expires_at: self.expires_at,
            }
        }
    }

    /// The bytes a vpsd before the paid period wrote for `order` (tests).
    #[cfg(test)]
    pub(crate) fn encode_order_v1(order: &crate::domain::Order) -> Vec<u8> {
        let o = order.clone();
        let v1 = OrderV1 {
            id: o.id,
            seq: o.seq,
            user_id: o.user_id,
            status: o.status,
            plan_id: o.plan_id,
            plan_name: o.plan_name,
            image_id: o.image_id,
            image_name: o.image_name,
            duration: o.duration,
            pricing: o.pricing,
            coupon_counted: o.coupon_counted,
            items: o.items,
            droplet: o.droplet,
            paid_at: o.paid_at,
            created_at: o.created_at,
            updated_at: o.updated_at,
            history_len: o.history_len,
        };
        let mut out = vec![1u8];
        let _ = bincode::serde::encode_into_std_write(&v1, &mut out, bincode::config::standard());
        out
    }

    /// `IdempotencyRecord` v1: the response as rendered then.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub(super) struct IdempotencyV1 {
        pub fingerprint: [u8; 32],
        pub response: ResponseV1,
        pub expires_at: i64,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub(super) struct ResponseV1 {
        pub status: u16,
        pub body: Vec<u8>,
    }

    impl IdempotencyV1 {
        pub(super) fn migrate(self) -> crate::backend::store::IdempotencyRecord {
            crate::backend::store::IdempotencyRecord {
                fingerprint: self.fingerprint,
                outcome: crate::backend::store::Replay::Legacy(
                    crate::domain::replay::LegacyReply::new(
                        self.response.status,
                        self.response.body,
                    ),
                ),
                expires_at: self.expires_at,
            }
        }
    }

    use super::CodecError;
    use crate::domain::droplet::{Droplet, DropletStatus};
    use crate::domain::task::{ProvisioningError, ProvisioningTask};
    use crate::domain::time::Millis;
    use crate::domain::ProvisioningStatus;

    /// `ProvisioningTask` v1: the droplet as flat fields, codes as free text.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub(super) struct TaskV1 {
        pub id: Uuid,
        pub order_id: Uuid,
        pub status: ProvisioningStatus,
        pub revision: u64,
        pub attempts: u32,
        pub do_region: String,
        pub do_size: String,
        pub do_image: String,
        pub droplet_id: Option<u64>,
        pub droplet_name: Option<String>,
        pub droplet_status: Option<String>,
        pub droplet_tags: Vec<String>,
        pub droplet_created_at: Option<Millis>,
        pub ipv4_public: Option<String>,
        pub ipv4_private: Option<String>,
        pub ipv6_public: Option<String>,
        pub error_code: Option<String>,
        pub error_message: Option<String>,
        pub create_action_id: Option<u64>,
        pub not_found_streak: u32,
        pub started_at: Option<Millis>,
        pub completed_at: Option<Millis>,
        pub created_at: Millis,
        pub updated_at: Millis,
    }

    impl TaskV1 {
        /// v1 set every droplet field together with `droplet_id`, so the droplet
        /// exists exactly when the id does. Its status was the provider's text,
        /// read as a provider status is read now. An error code v1 could not
        /// have written is refused rather than dropped.
        pub(super) fn migrate(self) -> Result<ProvisioningTask, CodecError> {
            let error_code = match self.error_code.as_deref() {
                None => None,
                Some(text) => Some(ProvisioningError::parse(text).ok_or_else(|| {
                    CodecError::Malformed(format!("v1 task: unknown error code {text:?}"))
                })?),
            };
            let droplet = self.droplet_id.map(|id| Droplet {
                id,
                name: self.droplet_name.unwrap_or_default(),
                status: self
                    .droplet_status
                    .as_deref()
                    .map_or(DropletStatus::Unknown, DropletStatus::from_provider),
                tags: self.droplet_tags,
                created_at: self.droplet_created_at,
                ipv4_public: self.ipv4_public,
                ipv4_private: self.ipv4_private,
                ipv6_public: self.ipv6_public,
            });
            let mut task = ProvisioningTask {
                action: None,
                do_account: None,
                capacity_wait_since: None,
                customer_action: None,
                actions_len: 0,
                id: self.id,
                order_id: self.order_id,
                status: self.status,
                revision: self.revision,
                attempts: self.attempts,
                do_region: self.do_region,
                do_size: self.do_size,
                do_image: self.do_image,
                droplet,
                error_code,
                error_message: self.error_message,
                create_action_id: self.create_action_id,
                not_found_streak: self.not_found_streak,
                started_at: self.started_at,
                completed_at: self.completed_at,
                created_at: self.created_at,
                updated_at: self.updated_at,
            };
            task.do_account = task.account_before_fleets();
            Ok(task)
        }
    }

    /// `ProvisioningTask` v2: as now, before tasks recorded their account.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub(super) struct TaskV2 {
        pub id: Uuid,
        pub order_id: Uuid,
        pub status: ProvisioningStatus,
        pub revision: u64,
        pub attempts: u32,
        pub do_region: String,
        pub do_size: String,
        pub do_image: String,
        pub droplet: Option<Droplet>,
        pub error_code: Option<ProvisioningError>,
        pub error_message: Option<String>,
        pub create_action_id: Option<u64>,
        pub not_found_streak: u32,
        pub started_at: Option<Millis>,
        pub completed_at: Option<Millis>,
        pub created_at: Millis,
        pub updated_at: Millis,
        pub action: Option<crate::domain::task::PendingAction>,
    }

    impl TaskV2 {
        /// Every v2 task ran on the one account of its time, `default`,
        /// unless it was never started (see `account_before_fleets`).
        pub(super) fn migrate(self) -> ProvisioningTask {
            let mut task = TaskV3 {
                id: self.id,
                order_id: self.order_id,
                status: self.status,
                revision: self.revision,
                attempts: self.attempts,
                do_region: self.do_region,
                do_size: self.do_size,
                do_image: self.do_image,
                droplet: self.droplet,
                error_code: self.error_code,
                error_message: self.error_message,
                create_action_id: self.create_action_id,
                not_found_streak: self.not_found_streak,
                started_at: self.started_at,
                completed_at: self.completed_at,
                created_at: self.created_at,
                updated_at: self.updated_at,
                action: self.action,
                do_account: None,
                capacity_wait_since: None,
            }
            .migrate();
            task.do_account = task.account_before_fleets();
            task
        }
    }

    /// `ProvisioningTask` v3: as now, before customer actions (SPEC §14).
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub(crate) struct TaskV3 {
        pub id: Uuid,
        pub order_id: Uuid,
        pub status: ProvisioningStatus,
        pub revision: u64,
        pub attempts: u32,
        pub do_region: String,
        pub do_size: String,
        pub do_image: String,
        pub droplet: Option<Droplet>,
        pub error_code: Option<ProvisioningError>,
        pub error_message: Option<String>,
        pub create_action_id: Option<u64>,
        pub not_found_streak: u32,
        pub started_at: Option<Millis>,
        pub completed_at: Option<Millis>,
        pub created_at: Millis,
        pub updated_at: Millis,
        pub action: Option<crate::domain::task::PendingAction>,
        pub do_account: Option<String>,
        pub capacity_wait_since: Option<Millis>,
    }

    impl TaskV3 {
        /// No customer action was ever asked of a v3 task.
        pub(crate) fn migrate(self) -> ProvisioningTask {
            ProvisioningTask {
                id: self.id,
                order_id: self.order_id,
                status: self.status,
                revision: self.revision,
                attempts: self.attempts,
                do_region: self.do_region,
                do_size: self.do_size,
                do_image: self.do_image,
                droplet: self.droplet,
                error_code: self.error_code,
                error_message: self.error_message,
                create_action_id: self.create_action_id,
                not_found_streak: self.not_found_streak,
                started_at: self.started_at,
                completed_at: self.completed_at,
                created_at: self.created_at,
                updated_at: self.updated_at,
                action: self.action,
                do_account: self.do_account,
                capacity_wait_since: self.capacity_wait_since,
                customer_action: None,
                actions_len: 0,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::legacy::TaskV1;
    use super::*;
    use crate::domain::droplet::{Droplet, DropletStatus};
    use crate::domain::task::ProvisioningError;
    use crate::domain::ProvisioningStatus;
    use crate::domain::{Actor, HistoryEntry, HistoryStatus, Order, OrderStatus};
    use proptest::prelude::*;
    use uuid::Uuid;

    impl Record for u32 {
        const VERSION: u8 = 1;
    }

    /// The v1 task below exactly as the build before v2 encoded it (its
    /// `ProvisioningTask` then had `TaskV1`'s fields): pins the frozen layout
    /// to bytes that really exist on disk.
    const V1_TASK_HEX: &str = concat!(
        "011000112233445566778899aabbccddeeff106f0429ea4344496dbd401f4e47",
        "a6220c03030704736770310b732d31766370752d316762107562756e74752d32",
        "322d30342d78363401fc4e61bc00010c7670732d366630343239656101036f66",
        "660204767073642f767073642d6f726465722d36663034323965612d34333434",
        "2d343936642d626434302d31663465343761363232306301fd009a20191a0300",
        "00010b3230332e302e3131332e37010a31302e3133302e302e3200010f44524f",
        "504c45545f4552524f524544011764726f706c65742031323334353637382069",
        "73206f666601fc01e9a4350101fdc08c1d191a03000001fd40a723191a030000",
        "fd807f1a191a030000fd40a723191a030000",
    );

    const ORDER_ID: &str = "6f0429ea-4344-496d-bd40-1f4e47a6220c";

    fn v1_task() -> TaskV1 {
        TaskV1 {
            id: Uuid::from_u128(0x0011_2233_4455_6677_8899_aabb_ccdd_eeff),
            order_id: Uuid::parse_str(ORDER_ID).unwrap(),
            status: ProvisioningStatus::Failed,
            revision: 3,
            attempts: 7,
            do_region: "sgp1".into(),
            do_size: "s-1vcpu-1gb".into(),
            do_image: "ubuntu-22-04-x64".into(),
            droplet_id: Some(12_345_678),
            droplet_name: Some("vps-6f0429ea".into()),
            droplet_status: Some("off".into()),
            droplet_tags: vec!["vpsd".into(), format!("vpsd-order-{ORDER_ID}")],
            droplet_created_at: Some(1_705_312_800_000),
            ipv4_public: Some("203.0.113.7".into()),
            ipv4_private: Some("10.130.0.2".into()),
            ipv6_public: None,
            error_code: Some("DROPLET_ERRORED".into()),
            error_message: Some("droplet 12345678 is off".into()),
            create_action_id: Some(900_000_001),
            not_found_streak: 1,
            started_at: Some(1_705_312_700_000),
            completed_at: Some(1_705_312_900_000),
            created_at: 1_705_312_600_000,
            updated_at: 1_705_312_900_000,
        }
    }

    fn encode_v1(task: &TaskV1) -> Vec<u8> {
        let mut bytes = vec![1u8];
        bytes.extend(bincode::serde::encode_to_vec(task, bincode::config::standard()).unwrap());
        bytes
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn v1_task_decodes_into_the_current_type_with_the_same_data() {
        let old = v1_task();
        let bytes = encode_v1(&old);
        assert_eq!(hex(&bytes), V1_TASK_HEX);

        let task: ProvisioningTask = decode(&bytes).unwrap();
        let droplet = Droplet {
            id: 12_345_678,
            name: "vps-6f0429ea".into(),
            status: DropletStatus::Off,
            tags: old.droplet_tags.clone(),
            created_at: Some(1_705_312_800_000),
            ipv4_public: Some("203.0.113.7".into()),
            ipv4_private: Some("10.130.0.2".into()),
            ipv6_public: None,
        };
        let expected = ProvisioningTask {
            action: None,
            do_account: Some("default".into()),
            capacity_wait_since: None,
            customer_action: None,
            actions_len: 0,
            id: old.id,
            order_id: old.order_id,
            status: ProvisioningStatus::Failed,
            revision: 3,
            attempts: 7,
            do_region: old.do_region.clone(),
            do_size: old.do_size.clone(),
            do_image: old.do_image.clone(),
            droplet: Some(droplet),
            error_code: Some(ProvisioningError::DropletErrored),
            error_message: old.error_message.clone(),
            create_action_id: Some(900_000_001),
            not_found_streak: 1,
            started_at: old.started_at,
            completed_at: old.completed_at,
            created_at: old.created_at,
            updated_at: old.updated_at,
        };
        assert_eq!(task, expected);

        // The next write stores it in the current layout, which reads back equal.
        let rewritten = encode(&task);
        assert_eq!(rewritten[0], ProvisioningTask::VERSION);
        assert_eq!(decode::<ProvisioningTask>(&rewritten).unwrap(), expected);
    }

    /// A v2 task (before accounts) belongs to `default` once it was started,
    /// and to no account (placement decides) while it never was.
    #[test]
    fn v2_tasks_belong_to_the_default_account_unless_never_started() {
        use super::legacy::TaskV2;
        let started: ProvisioningTask = decode(&encode_v1(&v1_task())).unwrap();
        let as_v2 = |t: &ProvisioningTask| {
            let v2 = TaskV2 {
                id: t.id,
                order_id: t.order_id,
                status: t.status,
                revision: t.revision,
                attempts: t.attempts,
                do_region: t.do_region.clone(),
                do_size: t.do_size.clone(),
                do_image: t.do_image.clone(),
                droplet: t.droplet.clone(),
                error_code: t.error_code,
                error_message: t.error_message.clone(),
                create_action_id: t.create_action_id,
                not_found_streak: t.not_found_streak,
                started_at: t.started_at,
                completed_at: t.completed_at,
                created_at: t.created_at,
                updated_at: t.updated_at,
                action: t.action.clone(),
            };
            let mut bytes = vec![2u8];
            bytes.extend(bincode::serde::encode_to_vec(&v2, bincode::config::standard()).unwrap());
            decode::<ProvisioningTask>(&bytes).unwrap()
        };
        assert_eq!(as_v2(&started), started);
        assert_eq!(started.do_account.as_deref(), Some("default"));
        let pending = ProvisioningTask {
            status: ProvisioningStatus::Pending,
            droplet: None,
            create_action_id: None,
            started_at: None,
            ..started.clone()
        };
        assert_eq!(as_v2(&pending).do_account, None);
    }

    #[test]
    fn v3_tasks_read_with_no_customer_action() {
        use super::legacy::TaskV3;
        let mut now: ProvisioningTask = decode(&encode_v1(&v1_task())).unwrap();
        now.capacity_wait_since = Some(1_700_000_000_000);
        let t = now.clone();
        let v3 = TaskV3 {
            id: t.id,
            order_id: t.order_id,
            status: t.status,
            revision: t.revision,
            attempts: t.attempts,
            do_region: t.do_region,
            do_size: t.do_size,
            do_image: t.do_image,
            droplet: t.droplet,
            error_code: t.error_code,
            error_message: t.error_message,
            create_action_id: t.create_action_id,
            not_found_streak: t.not_found_streak,
            started_at: t.started_at,
            completed_at: t.completed_at,
            created_at: t.created_at,
            updated_at: t.updated_at,
            action: t.action,
            do_account: t.do_account,
            capacity_wait_since: t.capacity_wait_since,
        };
        let mut bytes = vec![3u8];
        bytes.extend(bincode::serde::encode_to_vec(&v3, bincode::config::standard()).unwrap());
        let read: ProvisioningTask = decode(&bytes).unwrap();
        assert_eq!(read, now);
        assert_eq!((read.customer_action, read.actions_len), (None, 0));
    }

    #[test]
    fn v1_task_edge_cases_migrate_or_fail_loudly() {
        let mut fresh = v1_task();
        fresh.droplet_id = None;
        fresh.error_code = None;
        let task: ProvisioningTask = decode(&encode_v1(&fresh)).unwrap();
        assert_eq!((task.droplet, task.error_code), (None, None));

        let mut odd = v1_task();
        odd.droplet_status = Some("rebuilding".into());
        let task: ProvisioningTask = decode(&encode_v1(&odd)).unwrap();
        assert_eq!(task.droplet.unwrap().status, DropletStatus::Unknown);

        let mut bogus = v1_task();
        bogus.error_code = Some("NOT_A_CODE".into());
        assert!(matches!(
            decode::<ProvisioningTask>(&encode_v1(&bogus)),
            Err(CodecError::Malformed(_))
        ));
    }

    #[test]
    fn v1_idempotency_records_replay_the_stored_response() {
        use super::legacy::{IdempotencyV1, ResponseV1};
        let old = IdempotencyV1 {
            fingerprint: [7; 32],
            response: ResponseV1 {
                status: 201,
                body: br#"{"data":{}}"#.to_vec(),
            },
            expires_at: 42,
        };
        let mut bytes = vec![1u8];
        bincode::serde::encode_into_std_write(&old, &mut bytes, bincode::config::standard())
            .unwrap();
        let record: crate::backend::store::IdempotencyRecord = decode(&bytes).unwrap();
        assert_eq!(record.fingerprint, [7; 32]);
        assert_eq!(record.expires_at, 42);
        assert_eq!(
            record.outcome,
            crate::backend::store::Replay::Legacy(crate::domain::replay::LegacyReply::new(
                201,
                br#"{"data":{}}"#.to_vec()
            ))
        );
        let again: crate::backend::store::IdempotencyRecord = decode(&encode(&record)).unwrap();
        assert_eq!(again, record);
    }

    /// `order` in the layout of `Order` v2, before `auto_renew`.
    fn as_order_v2(o: &Order) -> super::legacy::OrderV2 {
        let o = o.clone();
        super::legacy::OrderV2 {
            id: o.id,
            seq: o.seq,
            user_id: o.user_id,
            status: o.status,
            plan_id: o.plan_id,
            plan_name: o.plan_name,
            image_id: o.image_id,
            image_name: o.image_name,
            duration: o.duration,
            pricing: o.pricing,
            coupon_counted: o.coupon_counted,
            items: o.items,
            droplet: o.droplet,
            paid_at: o.paid_at,
            created_at: o.created_at,
            updated_at: o.updated_at,
            history_len: o.history_len,
            term: o.term,
        }
    }

    fn with_version<T: serde::Serialize>(version: u8, value: &T) -> Vec<u8> {
        let mut bytes = vec![version];
        bytes.extend(bincode::serde::encode_to_vec(value, bincode::config::standard()).unwrap());
        bytes
    }

    /// An order written before auto-renew reads with the wish off, and the
    /// next write keeps the wish in the current layout.
    #[test]
    fn v2_orders_decode_with_auto_renew_off() {
        let mut order = crate::domain::order::test_order("alice");
        order.status = OrderStatus::Active;
        order.paid_at = Some(5);
        order.term.expires_at = Some(99);
        let bytes = with_version(2, &as_order_v2(&order));
        let back: Order = decode(&bytes).unwrap();
        assert!(!back.auto_renew);
        assert_eq!(back, order);

        let on = Order {
            auto_renew: true,
            ..back
        };
        let rewritten = encode(&on);
        assert_eq!(rewritten[0], Order::VERSION);
        assert_eq!(decode::<Order>(&rewritten).unwrap(), on);
        // A v2 body is one byte short of v3: mislabelled, it fails loudly.
        let mut mislabelled = bytes.clone();
        mislabelled[0] = Order::VERSION;
        assert!(decode::<Order>(&mislabelled).is_err());
    }

    /// Idempotency records embed the order: a v2 record replays the order
    /// it kept, read with auto-renew off, and a kept refusal as it was.
    #[test]
    fn v2_idempotency_records_replay_their_v2_order() {
        use super::legacy::{IdempotencyV2, RecordV2, ReplayV2};
        use crate::backend::store::{IdempotencyRecord, Replay};
        let order = crate::domain::order::test_order("alice");
        let kept = IdempotencyV2 {
            fingerprint: [3; 32],
            outcome: ReplayV2::Outcome(Box::new(Ok(RecordV2 {
                order: as_order_v2(&order),
                task: None,
            }))),
            expires_at: 77,
        };
        let record: IdempotencyRecord = decode(&with_version(2, &kept)).unwrap();
        let expected = crate::domain::OrderRecord { order, task: None };
        assert_eq!(record.outcome, Replay::Outcome(Box::new(Ok(expected))));
        assert_eq!((record.fingerprint, record.expires_at), ([3; 32], 77));

        let refused = IdempotencyV2 {
            outcome: ReplayV2::Outcome(Box::new(Err(crate::error::AppError::OrderNotFound))),
            ..kept
        };
        let record: IdempotencyRecord = decode(&with_version(2, &refused)).unwrap();
        assert_eq!(
            record.outcome,
            Replay::Outcome(Box::new(Err(crate::error::AppError::OrderNotFound)))
        );
        assert_eq!(
            decode::<IdempotencyRecord>(&encode(&record)).unwrap(),
            record
        );
    }

    #[test]
    fn unknown_task_versions_are_errors() {
        let body = &encode_v1(&v1_task())[1..];
        for version in [0u8, ProvisioningTask::VERSION + 1, 255] {
            let mut bytes = vec![version];
            bytes.extend_from_slice(body);
            assert!(matches!(
                decode::<ProvisioningTask>(&bytes),
                Err(CodecError::UnknownVersion(v)) if v == version
            ));
        }
    }

    #[test]
    fn task_enums_are_stored_as_their_wire_text() {
        let mut task: ProvisioningTask = decode(&encode_v1(&v1_task())).unwrap();
        if let Some(d) = task.droplet.as_mut() {
            d.status = DropletStatus::Archive;
        }
        task.error_code = Some(ProvisioningError::DropletActionFailed);
        let bytes = encode(&task);
        let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
        assert!(contains(b"archive"));
        assert!(contains(b"DROPLET_ACTION_FAILED"));
        assert_eq!(decode::<ProvisioningTask>(&bytes).unwrap(), task);
    }

    proptest! {
        #[test]
        fn history_rows_round_trip(prev in proptest::option::of(0..OrderStatus::ALL.len()), new in 0..HistoryStatus::ALL.len(), sub in ".*", reason in proptest::option::of(".*"), at in any::<i64>()) {
            let row = HistoryEntry {
                id: uuid::Uuid::new_v4(),
                previous_status: prev.map(|i| OrderStatus::ALL[i]),
                new_status: HistoryStatus::ALL[new],
                actor: Actor::User(sub),
                reason,
                metadata: None,
                created_at: at,
            };
            let back: HistoryEntry = decode(&encode(&row)).unwrap();
            prop_assert_eq!(back, row);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode::<HistoryEntry>(&bytes);
            let _ = decode::<ProvisioningTask>(&bytes);
        }
    }

    #[test]
    fn unknown_versions_and_trailing_bytes_are_rejected() {
        let mut bytes = encode(&7u32);
        bytes[0] = 9;
        assert!(matches!(
            decode::<u32>(&bytes),
            Err(CodecError::UnknownVersion(9))
        ));
        let mut bytes = encode(&7u32);
        bytes.push(0);
        assert!(matches!(
            decode::<u32>(&bytes),
            Err(CodecError::Trailing(1))
        ));
    }
}
