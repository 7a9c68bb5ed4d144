//! The order actions an operator can take: their names and labels, which
//! ones an order's status allows (the domain's transition table), and the
//! Order page's panel of buttons. The forms and what a submitted form does
//! are `actions`; the Order page (`order`) shows this panel, so neither of
//! those two modules imports the other for it.

use maud::{html, Markup};

use super::layout::csrf;
use super::session::{self, Session};
use crate::domain::lifecycle::{self, Event};
use crate::domain::OrderRecord;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pay,
    PaymentFailed,
    Cancel,
    Retry,
    Suspend,
    Unsuspend,
    Renew,
    Expiry,
    Terminate,
}

impl Action {
    pub const ALL: [Action; 9] = [
        Action::Pay,
        Action::PaymentFailed,
        Action::Retry,
        Action::Unsuspend,
        Action::Renew,
        Action::Expiry,
        Action::Suspend,
        Action::Cancel,
        Action::Terminate,
    ];

    pub fn slug(self) -> &'static str {
        match self {
            Action::Pay => "pay",
            Action::PaymentFailed => "payment-failed",
            Action::Cancel => "cancel",
            Action::Retry => "retry",
            Action::Suspend => "suspend",
            Action::Unsuspend => "unsuspend",
            Action::Renew => "renew",
            Action::Expiry => "expiry",
            Action::Terminate => "terminate",
        }
    }

    pub(super) fn parse(slug: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.slug() == slug)
    }

    /// The button's text.
    pub(super) fn label(self) -> &'static str {
        match self {
            Action::Pay => "Mark paid",
            Action::PaymentFailed => "Record failed payment",
            Action::Cancel => "Cancel order",
            Action::Retry => "Retry provisioning",
            Action::Suspend => "Suspend",
            Action::Unsuspend => "Unsuspend",
            Action::Renew => "Renew",
            Action::Expiry => "Set expiry",
            Action::Terminate => "Terminate",
        }
    }

    /// What is attempted, for error sentences ("Cannot cancel the order: ...").
    pub(super) fn attempt(self) -> &'static str {
        match self {
            Action::Pay => "mark the order paid",
            Action::PaymentFailed => "record a failed payment",
            Action::Cancel => "cancel the order",
            Action::Retry => "retry provisioning",
            Action::Suspend => "suspend the order",
            Action::Unsuspend => "unsuspend the order",
            Action::Renew => "renew the order",
            Action::Expiry => "change the expiry",
            Action::Terminate => "terminate the order",
        }
    }

    /// The transition-table event the service will check.
    pub(super) fn event(self) -> Event {
        match self {
            Action::Pay => Event::Paid,
            Action::PaymentFailed => Event::PaymentFailed,
            Action::Cancel => Event::Cancel,
            Action::Retry => Event::RetryProvisioning,
            Action::Suspend => Event::Suspend,
            Action::Unsuspend => Event::Unsuspend,
            Action::Renew => Event::Renew,
            Action::Expiry => Event::SetExpiry,
            Action::Terminate => Event::Terminate,
        }
    }

    /// Destructive actions go through a confirmation page.
    pub(super) fn destructive(self) -> bool {
        matches!(self, Action::Cancel | Action::Suspend | Action::Terminate)
    }

    /// Actions that are one button on the order page; the rest have a page
    /// with their fields (and, for destructive ones, the confirmation).
    pub(super) fn inline(self) -> bool {
        matches!(self, Action::Pay | Action::Retry | Action::Unsuspend)
    }

    pub(super) fn allowed(self, record: &OrderRecord) -> bool {
        lifecycle::outcome(record.order.status, self.event()).is_ok()
    }
}

/// The notice after a successful action (`?done=slug`).
pub fn done_text(slug: &str) -> Option<&'static str> {
    Some(match Action::parse(slug)? {
        Action::Pay => "Marked paid. Provisioning starts now.",
        Action::PaymentFailed => "Failed payment recorded; the order still awaits payment.",
        Action::Cancel => "Order canceled.",
        Action::Retry => "Provisioning restarted.",
        Action::Suspend => "Order suspended; the droplet is being powered off.",
        Action::Unsuspend => "Order unsuspended; the droplet is being powered on.",
        Action::Renew => "Renewal recorded.",
        Action::Expiry => "Expiry changed.",
        Action::Terminate => "Order terminated; its droplet is being deleted.",
    })
}

/// A fresh idempotency key for a form that charges or extends, as a hidden
/// field. Should the OS random source fail, the form goes without one (as an
/// API call without `Idempotency-Key`) rather than share a guessable key.
pub(super) fn fresh_key() -> Markup {
    match session::random_token() {
        Some(token) => {
            html! { input type="hidden" name="idem" value=(format!("console-{token}")); }
        }
        None => html! {},
    }
}

/// The order page's action panel: exactly the actions the status allows.
pub fn panel(session: &Session, record: &OrderRecord) -> Markup {
    let id = record.order.id;
    let allowed: Vec<Action> = Action::ALL
        .into_iter()
        .filter(|a| a.allowed(record))
        .collect();
    html! {
        section.actions aria-labelledby="actions-h" {
            h2 #actions-h { "Actions" }
            @if allowed.is_empty() {
                p.empty { "None: a " (record.order.status.as_str()) " order takes no further actions." }
            } @else {
                div.action-list {
                    @for action in &allowed {
                        @let target = format!("/admin/orders/{id}/{}", action.slug());
                        @if action.inline() {
                            form.inline method="post" action=(target) {
                                (csrf(session))
                                @if *action == Action::Pay { (fresh_key()) }
                                button type="submit" { (action.label()) }
                            }
                        } @else {
                            a.button.danger[action.destructive()] href=(target) { (action.label()) @if action.destructive() { "…" } }
                        }
                    }
                }
            }
        }
    }
}
