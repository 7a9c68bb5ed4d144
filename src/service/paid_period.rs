//! After ACTIVE (SPEC §9): terminate, suspend, unsuspend, renew, change expiry.
//! Each is one command through the writer; every one that owes a droplet
//! action wakes the reconciler, which carries it out.

use uuid::Uuid;

use super::idempotency::{IdempotencyKey, Reply};
use super::orders::OrderService;
use crate::domain::lifecycle::{Command, Renewing};
use crate::domain::time::Millis;
use crate::domain::{Actor, OrderRecord, TerminationReason};
use crate::error::AppError;

impl OrderService {
    /// The owner ends their server (USER_DELETED); another user's order is 403
    /// whatever its status. `note` is the owner's reason, kept on the row.
    pub async fn terminate_by_user(
        &self,
        user: &str,
        id: Uuid,
        note: Option<String>,
    ) -> Result<OrderRecord, AppError> {
        self.get_for_user(user, id).await?;
        let command = Command::Terminate {
            reason: TerminationReason::UserDeleted,
            note,
        };
        let actor = Actor::User(user.to_string());
        self.act(id, command, actor, Some(user.to_string())).await
    }

    pub async fn terminate_by_admin(
        &self,
        id: Uuid,
        reason: TerminationReason,
        note: Option<String>,
        admin: Option<String>,
    ) -> Result<OrderRecord, AppError> {
        let command = Command::Terminate { reason, note };
        self.act(id, command, Actor::Admin(admin), None).await
    }

    pub async fn suspend(
        &self,
        id: Uuid,
        reason: Option<String>,
        admin: Option<String>,
    ) -> Result<OrderRecord, AppError> {
        let command = Command::Suspend { reason };
        self.act(id, command, Actor::Admin(admin), None).await
    }

    pub async fn unsuspend(
        &self,
        id: Uuid,
        reason: Option<String>,
        admin: Option<String>,
    ) -> Result<OrderRecord, AppError> {
        let command = Command::Unsuspend { reason };
        self.act(id, command, Actor::Admin(admin), None).await
    }

    pub async fn set_expiry(
        &self,
        id: Uuid,
        at: Millis,
        reason: Option<String>,
        admin: Option<String>,
    ) -> Result<OrderRecord, AppError> {
        let command = Command::SetExpiry { at, reason };
        self.act(id, command, Actor::Admin(admin), None).await
    }

    /// A renewal, idempotent under `Idempotency-Key` like payment-status.
    pub async fn renew(
        &self,
        request: Result<(Uuid, Renewing), AppError>,
        admin: Option<String>,
        key: Option<IdempotencyKey>,
    ) -> Reply {
        let reply = self
            .idempotent(key, move |svc, write| {
                Box::pin(async move {
                    let (id, renewing) = request?;
                    let command = Command::Renew(renewing);
                    svc.apply(id, command, Actor::Admin(admin), None, write.take())
                        .await
                })
            })
            .await;
        if matches!(&reply, Reply::Fresh(Ok(_))) {
            self.wake_provisioner();
        }
        reply
    }

    async fn act(
        &self,
        id: Uuid,
        command: Command,
        actor: Actor,
        owner: Option<String>,
    ) -> Result<OrderRecord, AppError> {
        let record = self.apply(id, command, actor, owner, None).await?;
        self.wake_provisioner();
        Ok(record)
    }
}
