//! The Order page's "Server actions" (SPEC §14): the order's newest customer
//! actions and a form to ask for one as an operator (no cooldown), through
//! the same service call as `POST /internal/orders/{id}/actions`.

use maud::{html, Markup};

use super::layout::{badge, csrf, when};
use super::session::Session;
use super::{redirect, HttpResponse, Req};
use crate::domain::customer_action::{ActionType, CustomerAction};
use crate::domain::OrderRecord;
use crate::error::AppError;
use crate::service::actions::{ActionRequest, Requester};
use crate::service::Reply;

/// What the order page says after a queued action (`?done=server-action`).
pub const QUEUED: &str = "The server action is queued; the list below follows it.";

/// The section: the offer (while the order is ACTIVE) and the list.
pub fn section(session: &Session, record: &OrderRecord, actions: &[CustomerAction]) -> Markup {
    let o = &record.order;
    let active = o.status == crate::domain::OrderStatus::Active;
    html! {
        section aria-labelledby="server-actions-h" {
            h2 #server-actions-h { "Server actions" }
            @if active {
                form.action-form method="post" action=(format!("/admin/orders/{}/server-action", o.id)) {
                    (csrf(session))
                    div.field {
                        label for="sa-type" { "Action" }
                        select #sa-type name="type" {
                            @for kind in ActionType::ALL {
                                option value=(kind.as_str()) { (label(*kind)) }
                            }
                        }
                    }
                    div.field {
                        label for="sa-image" { "Image for a rebuild" }
                        input #sa-image type="text" name="imageId" maxlength="64" placeholder=(o.image_id) aria-describedby="sa-image-hint";
                        p.hint #sa-image-hint { "Rebuild only: a catalog image offered with the plan. Everything on the server is erased." }
                    }
                    div.buttons { button type="submit" { "Ask" } }
                }
            } @else {
                p.hint { "Only an ACTIVE server takes actions." }
            }
            @if actions.is_empty() {
                p.empty { "No server actions yet." }
            } @else {
                div.table role="region" aria-label="Server actions" tabindex="0" {
                    table {
                        thead { tr { th scope="col" { "Asked" } th scope="col" { "Action" } th scope="col" { "Status" } th scope="col" { "By" } th scope="col" { "Ended" } th scope="col" { "Why" } } }
                        tbody {
                            @for a in actions {
                                tr {
                                    td { (when(Some(a.created_at))) }
                                    td { (label(a.kind)) @if let Some(image) = &a.image { " → " (image.name) } }
                                    td { (badge(a.status.as_str())) }
                                    td { (a.requested_by) }
                                    td { (when(a.completed_at)) }
                                    td { (a.error_message.as_deref().unwrap_or("")) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn label(kind: ActionType) -> &'static str {
    match kind {
        ActionType::Reboot => "Reboot",
        ActionType::PowerCycle => "Power cycle",
        ActionType::Shutdown => "Shut down",
        ActionType::PowerOff => "Power off",
        ActionType::PowerOn => "Power on",
        ActionType::Rebuild => "Rebuild",
    }
}

/// POST `/admin/orders/{id}/server-action`.
pub async fn submit(req: &Req<'_>) -> HttpResponse {
    let Ok(id) = uuid::Uuid::try_parse(req.id) else {
        return super::parts::not_found(req.session.as_ref());
    };
    let form: serde_json::Map<String, serde_json::Value> = ["type", "imageId"]
        .iter()
        .filter_map(|k| {
            req.form
                .get(k)
                .filter(|v| !v.is_empty())
                .map(|v| (k.to_string(), v.into()))
        })
        .collect();
    let parsed: Result<ActionRequest, AppError> = crate::http::api::request::customer_action(&form);
    let who = Requester::Admin(req.operator());
    let reply = req
        .api()
        .orders
        .request_action(who, parsed.map(|r| (id, r)), None)
        .await;
    let outcome = match reply {
        Reply::Fresh(outcome) => outcome.map(|_| ()),
        Reply::Replayed(_) => Ok(()),
    };
    match outcome {
        Ok(()) => redirect(&format!("/admin/orders/{id}?done=server-action")),
        Err(e) => {
            let (status, _, _) = crate::http::api::error::classify(&e);
            let text = super::parts::sentence(&e, Some("ask for that server action"));
            super::parts::error_page(req.session.as_ref(), status, "Server action refused", &text)
        }
    }
}
