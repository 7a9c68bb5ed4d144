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

/// How an action is taken from the order page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// One button on the order page.
    OneClick,
    /// A page with its fields.
    Fields,
    /// A page with its fields and a confirmation: the action is destructive.
    Confirmed,
}

/// Everything the console says about an action, in one place per action.
struct Spec {
    slug: &'static str,
    /// The transition-table event the service will check; the button shows
    /// only where the table allows it.
    event: Event,
    /// The button's text.
    label: &'static str,
    /// What is attempted, for error sentences ("Cannot cancel the order: ...").
    attempt: &'static str,
    /// The notice after success (`?done=slug`).
    done: &'static str,
    kind: Kind,
}

impl Action {
    /// The order page's panel order: what moves the order on first, the
    /// destructive ones last. Every operator event of the lifecycle's rules
    /// has exactly one action here (the tests below check).
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

    fn spec(self) -> Spec {
        match self {
            Action::Pay => Spec {
                slug: "pay",
                event: Event::Paid,
                label: "Mark paid",
                attempt: "mark the order paid",
                done: "Marked paid. Provisioning starts now.",
                kind: Kind::OneClick,
            },
            Action::PaymentFailed => Spec {
                slug: "payment-failed",
                event: Event::PaymentFailed,
                label: "Record failed payment",
                attempt: "record a failed payment",
                done: "Failed payment recorded; the order still awaits payment.",
                kind: Kind::Fields,
            },
            Action::Cancel => Spec {
                slug: "cancel",
                event: Event::Cancel,
                label: "Cancel order",
                attempt: "cancel the order",
                done: "Order canceled.",
                kind: Kind::Confirmed,
            },
            Action::Retry => Spec {
                slug: "retry",
                event: Event::RetryProvisioning,
                label: "Retry provisioning",
                attempt: "retry provisioning",
                done: "Provisioning restarted.",
                kind: Kind::OneClick,
            },
            Action::Suspend => Spec {
                slug: "suspend",
                event: Event::Suspend,
                label: "Suspend",
                attempt: "suspend the order",
                done: "Order suspended; the droplet is being powered off.",
                kind: Kind::Confirmed,
            },
            Action::Unsuspend => Spec {
                slug: "unsuspend",
                event: Event::Unsuspend,
                label: "Unsuspend",
                attempt: "unsuspend the order",
                done: "Order unsuspended; the droplet is being powered on.",
                kind: Kind::OneClick,
            },
            Action::Renew => Spec {
                slug: "renew",
                event: Event::Renew,
                label: "Renew",
                attempt: "renew the order",
                done: "Renewal recorded.",
                kind: Kind::Fields,
            },
            Action::Expiry => Spec {
                slug: "expiry",
                event: Event::SetExpiry,
                label: "Set expiry",
                attempt: "change the expiry",
                done: "Expiry changed.",
                kind: Kind::Fields,
            },
            Action::Terminate => Spec {
                slug: "terminate",
                event: Event::Terminate,
                label: "Terminate",
                attempt: "terminate the order",
                done: "Order terminated; its droplet is being deleted.",
                kind: Kind::Confirmed,
            },
        }
    }

    pub fn slug(self) -> &'static str {
        self.spec().slug
    }

    pub(super) fn parse(slug: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.slug() == slug)
    }

    /// The button's text.
    pub(super) fn label(self) -> &'static str {
        self.spec().label
    }

    /// What is attempted, for error sentences ("Cannot cancel the order: ...").
    pub(super) fn attempt(self) -> &'static str {
        self.spec().attempt
    }

    /// The transition-table event the service will check.
    pub(super) fn event(self) -> Event {
        self.spec().event
    }

    /// Destructive actions go through a confirmation page.
    pub(super) fn destructive(self) -> bool {
        self.spec().kind == Kind::Confirmed
    }

    /// Actions that are one button on the order page; the rest have a page
    /// with their fields (and, for destructive ones, the confirmation).
    pub(super) fn inline(self) -> bool {
        self.spec().kind == Kind::OneClick
    }

    pub(super) fn allowed(self, record: &OrderRecord) -> bool {
        lifecycle::outcome(record.order.status, self.event()).is_ok()
    }
}

/// The notice after a successful action (`?done=slug`).
pub fn done_text(slug: &str) -> Option<&'static str> {
    Action::parse(slug).map(|action| action.spec().done)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The console offers exactly the lifecycle's operator events: a new
    /// command an operator may ask for fails here until it has its button.
    #[test]
    fn every_operator_event_has_exactly_one_action() {
        for &event in Event::ALL {
            let actions = Action::ALL.iter().filter(|a| a.event() == event).count();
            let wanted = usize::from(event.rule().operator);
            assert_eq!(actions, wanted, "{event:?}");
        }
    }

    #[test]
    fn every_action_is_found_by_its_slug() {
        for action in Action::ALL {
            assert_eq!(Action::parse(action.slug()), Some(action));
            assert_eq!(done_text(action.slug()), Some(action.spec().done));
        }
    }
}
