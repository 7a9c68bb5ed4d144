//! Domain values in the SPEC's JSON shapes (camelCase, RFC 3339 millisecond
//! timestamps, ids as strings). Only this module knows the wire names; the
//! API answers with these shapes and webhook events carry the same order, so
//! both depend on this module and neither on the other.
//!
//! An order is rendered for a [`View`]: customers (user routes) see a fixed
//! public text per provisioning `errorCode`, because DigitalOcean's own
//! message can name internal hosts or quote part of a token; operators
//! (internal routes) see DigitalOcean's message. The plain [`order`] and
//! [`order_page`] are the operator view.

use serde::Serialize;
use serde_json::Value;

use crate::domain::customer_action::{CustomerAction, ACTION_FAILED};
use crate::domain::task::{ProvisioningError, ProvisioningTask};
use crate::domain::time::format_millis;
use crate::domain::{HistoryEntry, OrderItem, Pricing, Renewal};
use crate::domain::{OrderRecord, Page};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderJson<'a> {
    id: String,
    user_id: &'a str,
    status: &'static str,
    /// Payment-status answers only: the status before the call, as v1 sent it.
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_status: Option<&'static str>,
    plan_id: &'a str,
    plan_name: &'a str,
    image_id: &'a str,
    image_name: &'a str,
    duration: &'static str,
    pricing: PricingJson<'a>,
    final_price: u64,
    currency: &'a str,
    items: Vec<ItemJson<'a>>,
    provisioning_task: Option<TaskJson<'a>>,
    paid_at: Option<String>,
    created_at: String,
    updated_at: String,
    activated_at: Option<String>,
    expires_at: Option<String>,
    suspended_at: Option<String>,
    suspend_reason: Option<&'static str>,
    terminated_at: Option<String>,
    termination_reason: Option<&'static str>,
    /// The owner's wish for automatic renewal (SPEC §14); vpsd never charges.
    auto_renew: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_history: Option<Vec<HistoryJson<'a>>>,
    /// Admin detail only: the [`RENEWALS_SHOWN`] newest, oldest of them first.
    #[serde(skip_serializing_if = "Option::is_none")]
    renewals: Option<Vec<RenewalJson>>,
    /// Admin detail only: every renewal and expiry change, however many are shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    renewals_total: Option<usize>,
    /// Admin detail only: the newest customer actions
    /// (`service::actions::ACTIONS_SHOWN`).
    #[serde(skip_serializing_if = "Option::is_none")]
    actions: Option<Vec<ActionJson<'a>>>,
}

/// A customer action (SPEC §14).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionJson<'a> {
    id: String,
    order_id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    image_id: Option<&'a str>,
    status: &'static str,
    requested_by: &'a str,
    created_at: String,
    started_at: Option<String>,
    completed_at: Option<String>,
    error_code: Option<&'a str>,
    error_message: Option<&'a str>,
}

/// What a customer reads for an action that failed: DigitalOcean's own
/// message can name internal hosts, as with provisioning errors.
const ACTION_FAILED_TEXT: &str =
    "The server did not carry out the action. Our team has been notified; you may ask again.";

pub fn action_for(view: View, a: &CustomerAction) -> ActionJson<'_> {
    let failed = a.error_code.as_deref() == Some(ACTION_FAILED);
    ActionJson {
        id: a.id.to_string(),
        order_id: a.order_id.to_string(),
        kind: a.kind.as_str(),
        image_id: a.image.as_ref().map(|i| i.id.as_str()),
        status: a.status.as_str(),
        requested_by: &a.requested_by,
        created_at: format_millis(a.created_at),
        started_at: a.started_at.map(format_millis),
        completed_at: a.completed_at.map(format_millis),
        error_code: a.error_code.as_deref(),
        error_message: match view {
            View::Customer if failed => Some(ACTION_FAILED_TEXT),
            _ => a.error_message.as_deref(),
        },
    }
}

/// The admin detail: the operator view with its history and its newest
/// customer actions.
pub fn admin_detail<'a>(
    record: &'a OrderRecord,
    history: &'a [HistoryEntry],
    actions: &'a [CustomerAction],
) -> OrderJson<'a> {
    let mut json = order(record, Some(history));
    json.actions = Some(
        actions
            .iter()
            .map(|a| action_for(View::Operator, a))
            .collect(),
    );
    json
}

/// How many renewals the admin detail lists: an order changed a thousand
/// times must not answer with a megabyte (SPEC §12); the history keeps a row
/// per change and `renewalsTotal` the count.
pub const RENEWALS_SHOWN: usize = 50;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RenewalJson {
    id: String,
    renewal_type: &'static str,
    periods: u32,
    amount: u64,
    previous_expiry: Option<String>,
    new_expiry: String,
    actor: String,
    created_at: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PricingJson<'a> {
    base_price: u64,
    promo_discount: u64,
    coupon_code: Option<&'a str>,
    coupon_discount: u64,
    final_price: u64,
    currency: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ItemJson<'a> {
    id: String,
    item_type: &'static str,
    reference_id: &'a str,
    description: &'a str,
    unit_price: u64,
    quantity: u32,
    total_price: u64,
    created_at: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TaskJson<'a> {
    id: String,
    status: &'static str,
    attempts: u32,
    do_region: &'a str,
    do_size: &'a str,
    do_image: &'a str,
    droplet_id: Option<String>,
    droplet_name: Option<&'a str>,
    droplet_status: Option<&'static str>,
    droplet_tags: &'a [String],
    droplet_created_at: Option<String>,
    ipv4_public: Option<&'a str>,
    ipv4_private: Option<&'a str>,
    ipv6_public: Option<&'a str>,
    error_code: Option<&'static str>,
    error_message: Option<&'a str>,
    pending_action: Option<&'static str>,
    /// The DigitalOcean account the server lives on (SPEC §13): operators only.
    #[serde(skip_serializing_if = "Option::is_none")]
    do_account: Option<&'a str>,
    started_at: Option<String>,
    completed_at: Option<String>,
    created_at: String,
    updated_at: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HistoryJson<'a> {
    id: String,
    previous_status: &'static str,
    new_status: &'static str,
    actor: String,
    reason: Option<&'a str>,
    metadata: Option<Value>,
    created_at: String,
}

/// A list's `meta` (SPEC §2 pagination).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    page: u32,
    limit: u32,
    total: u64,
    total_pages: u64,
}

impl Meta {
    pub fn new(page: u32, limit: u32, total: u64) -> Meta {
        Meta {
            page,
            limit,
            total,
            total_pages: total.div_ceil(u64::from(limit.max(1))),
        }
    }
}

#[derive(Serialize)]
struct Data<T> {
    data: T,
}

#[derive(Serialize)]
struct ListBody<T> {
    data: T,
    meta: Meta,
}

/// Who reads a rendered order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// The order's owner, through the user routes.
    Customer,
    /// The payment system or an operator, through the internal routes.
    Operator,
}

/// What a customer reads in `errorMessage` for a provisioning error: what
/// happened and what comes next, in words that hold for every occurrence.
pub fn public_error_text(code: ProvisioningError) -> &'static str {
    use ProvisioningError::*;
    match code {
        DropletCreationFailed => "The server could not be created. Our team has been notified and will follow up.",
        DropletErrored => "The server failed while starting. Our team has been notified and will follow up.",
        DropletNotFound => "The server could not be found after it was created. Our team has been notified and will follow up.",
        DigitaloceanUnauthorized => "Provisioning is paused by a configuration problem on our side. Our team has been notified.",
        DigitaloceanUnavailable => "The cloud provider is temporarily unavailable; provisioning will retry automatically.",
        ProvisioningTimeout => "The server did not become ready in time. Our team has been notified and will follow up.",
        DropletActionFailed => "A power action on the server has not completed yet; it will be retried automatically.",
        NoCapacity => "Every server pool is full right now; the server will be created as soon as room opens.",
    }
}

/// The operator view of an order.
pub fn order<'a>(record: &'a OrderRecord, history: Option<&'a [HistoryEntry]>) -> OrderJson<'a> {
    order_for(View::Operator, record, history)
}

pub fn order_for<'a>(
    view: View,
    record: &'a OrderRecord,
    history: Option<&'a [HistoryEntry]>,
) -> OrderJson<'a> {
    let o = &record.order;
    OrderJson {
        id: o.id.to_string(),
        user_id: &o.user_id,
        status: o.status.as_str(),
        previous_status: None,
        plan_id: &o.plan_id,
        plan_name: &o.plan_name,
        image_id: &o.image_id,
        image_name: &o.image_name,
        duration: o.duration.as_str(),
        pricing: pricing(&o.pricing),
        final_price: o.pricing.final_price,
        currency: &o.pricing.currency,
        items: o.items.iter().map(item).collect(),
        provisioning_task: record.task.as_ref().map(|t| task(view, t)),
        paid_at: o.paid_at.map(format_millis),
        created_at: format_millis(o.created_at),
        updated_at: format_millis(o.updated_at),
        activated_at: o.term.activated_at.map(format_millis),
        expires_at: o.term.expires_at.map(format_millis),
        suspended_at: o.term.suspended_at.map(format_millis),
        suspend_reason: o.term.suspend_reason.map(|r| r.as_str()),
        terminated_at: o.term.terminated_at.map(format_millis),
        termination_reason: o.term.termination_reason.map(|r| r.as_str()),
        auto_renew: o.auto_renew,
        status_history: history.map(|rows| rows.iter().map(history_row).collect()),
        renewals: history.map(|_| newest_renewals(&o.term.renewals)),
        renewals_total: history.map(|_| o.term.renewals.len()),
        actions: None,
    }
}

fn newest_renewals(all: &[Renewal]) -> Vec<RenewalJson> {
    let first = all.len().saturating_sub(RENEWALS_SHOWN);
    all[first..].iter().map(renewal).collect()
}

fn renewal(r: &Renewal) -> RenewalJson {
    RenewalJson {
        id: r.id.to_string(),
        renewal_type: r.renewal_type.as_str(),
        periods: r.periods,
        amount: r.amount,
        previous_expiry: r.previous_expiry.map(format_millis),
        new_expiry: format_millis(r.new_expiry),
        actor: r.actor.render(),
        created_at: format_millis(r.created_at),
    }
}

fn pricing(p: &Pricing) -> PricingJson<'_> {
    PricingJson {
        base_price: p.base_price,
        promo_discount: p.promo_discount,
        coupon_code: p.coupon_code.as_deref(),
        coupon_discount: p.coupon_discount,
        final_price: p.final_price,
        currency: &p.currency,
    }
}

fn item(i: &OrderItem) -> ItemJson<'_> {
    ItemJson {
        id: i.id.to_string(),
        item_type: i.item_type.as_str(),
        reference_id: &i.reference_id,
        description: &i.description,
        unit_price: i.unit_price,
        quantity: i.quantity,
        total_price: i.total_price,
        created_at: format_millis(i.created_at),
    }
}

fn task(view: View, t: &ProvisioningTask) -> TaskJson<'_> {
    let d = t.droplet.as_ref();
    TaskJson {
        id: t.id.to_string(),
        status: t.status.as_str(),
        attempts: t.attempts,
        do_region: &t.do_region,
        do_size: &t.do_size,
        do_image: &t.do_image,
        droplet_id: d.map(|d| d.id.to_string()),
        droplet_name: d.map(|d| d.name.as_str()),
        droplet_status: d.map(|d| d.status.as_str()),
        droplet_tags: d.map_or(&[], |d| d.tags.as_slice()),
        droplet_created_at: d.and_then(|d| d.created_at).map(format_millis),
        ipv4_public: d.and_then(|d| d.ipv4_public.as_deref()),
        ipv4_private: d.and_then(|d| d.ipv4_private.as_deref()),
        ipv6_public: d.and_then(|d| d.ipv6_public.as_deref()),
        error_code: t.error_code.map(|c| c.as_str()),
        error_message: match view {
            View::Operator => t.error_message.as_deref(),
            // The code decides the text; a message without a code (none is
            // written so) shows nothing rather than the raw text.
            View::Customer => t.error_code.map(public_error_text),
        },
        pending_action: t.action.as_ref().map(|a| a.action.as_str()),
        do_account: match view {
            View::Operator => t.do_account.as_deref(),
            View::Customer => None,
        },
        started_at: t.started_at.map(format_millis),
        completed_at: t.completed_at.map(format_millis),
        created_at: format_millis(t.created_at),
        updated_at: format_millis(t.updated_at),
    }
}

fn history_row(h: &HistoryEntry) -> HistoryJson<'_> {
    HistoryJson {
        id: h.id.to_string(),
        previous_status: h.previous_status.map_or("", |s| s.as_str()),
        new_status: h.new_status.as_str(),
        actor: h.actor.render(),
        reason: h.reason.as_deref(),
        metadata: h
            .metadata
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok()),
        created_at: format_millis(h.created_at),
    }
}

/// A payment-status answer: the operator view with v1's `previousStatus`.
/// An accepted payment event always starts from the same status, so the
/// stored outcome (the order as committed) renders it again on replay.
pub fn payment_reply(record: &OrderRecord) -> OrderJson<'_> {
    let mut json = order(record, None);
    json.previous_status = Some(crate::domain::lifecycle::PAYMENT_FROM.as_str());
    json
}

/// The order in a webhook event: the admin view without `statusHistory`
/// (SPEC §10) and without renewals, so an event's body does not grow with
/// every renewal the order ever had (SPEC §12); the admin detail lists them.
pub fn order_for_event(record: &OrderRecord) -> OrderJson<'_> {
    order(record, None)
}

/// `{"data": value}`.
pub fn data<T: Serialize>(value: T) -> Vec<u8> {
    serde_json::to_vec(&Data { data: value }).unwrap_or_default()
}

/// `{"data":[...],"meta":{page,limit,total,totalPages}}`, operator view.
pub fn order_page(page: &Page, page_no: u32, limit: u32) -> Vec<u8> {
    order_page_for(View::Operator, page, page_no, limit)
}

pub fn order_page_for(view: View, page: &Page, page_no: u32, limit: u32) -> Vec<u8> {
    let items: Vec<_> = page
        .items
        .iter()
        .map(|r| order_for(view, r, None))
        .collect();
    list(items, Meta::new(page_no, limit, page.total))
}

/// `{"data":[...],"meta":{...}}`: every list's envelope.
pub fn list<T: Serialize>(items: Vec<T>, meta: Meta) -> Vec<u8> {
    serde_json::to_vec(&ListBody { data: items, meta }).unwrap_or_default()
}
