//! DigitalOcean API v2 over ureq (blocking).
//!
//! One `ureq::Agent` with a global timeout, because ureq 3 has no timeouts by
//! default and a hung call would stall a whole sweep. Status codes are read rather
//! than turned into errors so that 4xx/5xx bodies and rate-limit headers are seen.
//!
//! The client keeps itself under DigitalOcean's limits: every answer's
//! `RateLimit-Limit` / `RateLimit-Remaining` / `RateLimit-Reset` is remembered, and
//! once the remaining budget drops to the reserve ([`RATE_LIMIT_RESERVE`], at most a
//! tenth of the limit) calls are refused locally (without being sent) until the
//! reset time. A 429 likewise blocks calls for its `Retry-After`.
//!
//! Redirects are never followed: the token must go to the configured API only.

mod client;
mod wire;

use std::collections::HashSet;
use std::time::Duration;

pub use client::{reserve_for, DigitalOcean, RATE_LIMIT_RESERVE};
use client::{Method, MAX_PAGES, PER_PAGE};
use wire::{
    action_body, action_status, create_body, recent_first, unparseable, AccountResponse,
    ActionListResponse, ActionResponse, CreateResponse, GetResponse, ListResponse,
    PostedActionResponse,
};

use super::{
    check_delete_tag, AccountInfo, ActionInfo, ActionStatus, Cloud, CloudError, Created,
    DropletSpec, RECENT_ACTIONS,
};
use crate::domain::customer_action::ActionType;
use crate::domain::droplet::Droplet;

impl DigitalOcean {
    /// The create action of a droplet found by tag (its id is only in the create
    /// answer, which a crash may have lost), via `GET /v2/droplets/{id}/actions`.
    /// `Ok(None)` when the droplet lists no create action.
    pub fn find_create_action(
        &self,
        droplet_id: u64,
    ) -> Result<Option<(u64, ActionStatus)>, CloudError> {
        let path = format!("/droplets/{droplet_id}/actions");
        let mut page = 1u32;
        loop {
            let query = [
                ("per_page", PER_PAGE.to_string()),
                ("page", page.to_string()),
            ];
            let text = self.call(Method::Get, &path, &query, None)?;
            let parsed: ActionListResponse =
                serde_json::from_str(&text).map_err(|e| unparseable("droplet actions", e))?;
            let actions = parsed.actions.unwrap_or_default();
            if let Some(a) = actions.iter().find(|a| a.kind.as_deref() == Some("create")) {
                return Ok(Some((a.id, action_status(&a.status)?)));
            }
            let has_next = parsed
                .links
                .and_then(|l| l.pages)
                .and_then(|p| p.next)
                .is_some();
            if actions.is_empty() || !has_next || page >= MAX_PAGES {
                return Ok(None);
            }
            page += 1;
        }
    }
}

impl Cloud for DigitalOcean {
    fn find_create_action(
        &self,
        droplet_id: u64,
    ) -> Result<Option<(u64, ActionStatus)>, CloudError> {
        DigitalOcean::find_create_action(self, droplet_id)
    }

    fn call_timeout(&self) -> Duration {
        self.timeout
    }

    fn calls_sent(&self) -> u64 {
        DigitalOcean::calls_sent(self)
    }

    fn rate_limited_count(&self) -> u64 {
        DigitalOcean::rate_limited_count(self)
    }

    fn rate_limit_remaining(&self) -> Option<u64> {
        DigitalOcean::rate_limit_remaining(self)
    }

    fn name(&self) -> &'static str {
        "digitalocean"
    }

    fn create_droplet(&self, spec: &DropletSpec) -> Result<Created, CloudError> {
        let body = create_body(spec);
        let text = self.call(Method::Post, "/droplets", &[], Some(&body))?;
        let parsed: CreateResponse =
            serde_json::from_str(&text).map_err(|e| unparseable("create", e))?;
        let actions = parsed.links.unwrap_or_default().actions.unwrap_or_default();
        let action_id = actions
            .iter()
            .find(|a| a.rel.as_deref() == Some("create"))
            .or_else(|| actions.first())
            .map(|a| a.id);
        let droplet = parsed.droplet.into_droplet();
        tracing::debug!(droplet_id = droplet.id, action_id = ?action_id, "droplet create accepted");
        Ok(Created {
            droplet,
            create_action_id: action_id,
        })
    }

    fn get_droplet(&self, id: u64) -> Result<Droplet, CloudError> {
        let text = self.call(Method::Get, &format!("/droplets/{id}"), &[], None)?;
        let parsed: GetResponse =
            serde_json::from_str(&text).map_err(|e| unparseable("droplet", e))?;
        Ok(parsed.droplet.into_droplet())
    }

    fn list_by_tag(&self, tag: &str) -> Result<Vec<Droplet>, CloudError> {
        let mut out = Vec::new();
        // Droplets created while paging shift later pages; never report one twice.
        let mut seen = HashSet::new();
        let mut page = 1u32;
        loop {
            let query = [
                ("tag_name", tag.to_string()),
                ("per_page", PER_PAGE.to_string()),
                ("page", page.to_string()),
            ];
            let text = self.call(Method::Get, "/droplets", &query, None)?;
            let parsed: ListResponse =
                serde_json::from_str(&text).map_err(|e| unparseable("droplet list", e))?;
            let droplets = parsed.droplets.unwrap_or_default();
            let count = droplets.len();
            for d in droplets {
                if seen.insert(d.id) {
                    out.push(d.into_droplet());
                }
            }
            // `links.pages.next` is the documented signal; `meta.total` covers a
            // server that omits links. The next URL itself is not followed so the
            // token is only ever sent to the configured host.
            let has_next = parsed
                .links
                .and_then(|l| l.pages)
                .and_then(|p| p.next)
                .is_some();
            let total = parsed.meta.and_then(|m| m.total);
            let more_by_total = total.is_some_and(|t| (out.len() as u64) < t);
            if count == 0 || !(has_next || more_by_total) {
                break;
            }
            page += 1;
            if page > MAX_PAGES {
                return Err(CloudError::Unavailable(format!(
                    "listing tag {tag}: more than {MAX_PAGES} pages"
                )));
            }
        }
        Ok(out)
    }

    fn account(&self) -> Result<AccountInfo, CloudError> {
        let text = self.call(Method::Get, "/account", &[], None)?;
        let parsed: AccountResponse =
            serde_json::from_str(&text).map_err(|e| unparseable("account", e))?;
        Ok(AccountInfo {
            droplet_limit: parsed.account.droplet_limit,
            active: parsed.account.status.as_deref() == Some("active"),
        })
    }

    /// One droplet per page: `meta.total` is the count, whoever made them.
    fn droplet_count(&self) -> Result<u64, CloudError> {
        let query = [("per_page", "1".to_string())];
        let text = self.call(Method::Get, "/droplets", &query, None)?;
        let parsed: ListResponse =
            serde_json::from_str(&text).map_err(|e| unparseable("droplet list", e))?;
        parsed
            .meta
            .and_then(|m| m.total)
            .ok_or_else(|| CloudError::Unavailable("droplet list without meta.total".into()))
    }

    fn delete_droplet(&self, id: u64) -> Result<(), CloudError> {
        match self.call(Method::Delete, &format!("/droplets/{id}"), &[], None) {
            Ok(_) | Err(CloudError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn get_action(&self, id: u64) -> Result<ActionStatus, CloudError> {
        let text = self.call(Method::Get, &format!("/actions/{id}"), &[], None)?;
        let parsed: ActionResponse =
            serde_json::from_str(&text).map_err(|e| unparseable("action", e))?;
        action_status(&parsed.action.status)
    }

    fn act(
        &self,
        droplet_id: u64,
        kind: ActionType,
        image: Option<&str>,
    ) -> Result<u64, CloudError> {
        let path = format!("/droplets/{droplet_id}/actions");
        let text = self.call(Method::Post, &path, &[], Some(&action_body(kind, image)))?;
        let parsed: PostedActionResponse =
            serde_json::from_str(&text).map_err(|e| unparseable("droplet action", e))?;
        let action_id = parsed.action.id;
        tracing::debug!(
            droplet_id,
            action = kind.as_str(),
            action_id,
            "droplet action accepted"
        );
        Ok(action_id)
    }

    fn droplet_actions(&self, droplet_id: u64) -> Result<Vec<ActionInfo>, CloudError> {
        let path = format!("/droplets/{droplet_id}/actions");
        let query = [
            ("per_page", RECENT_ACTIONS.to_string()),
            ("page", "1".to_string()),
        ];
        let text = self.call(Method::Get, &path, &query, None)?;
        let parsed: ActionListResponse =
            serde_json::from_str(&text).map_err(|e| unparseable("droplet actions", e))?;
        recent_first(parsed.actions.unwrap_or_default())
    }

    fn delete_by_tag(&self, tag: &str) -> Result<(), CloudError> {
        check_delete_tag(tag)?;
        // 204 whether or not any droplet carried the tag; a 404 (no such tag)
        // means the same thing for the caller: nothing carries it.
        let query = [("tag_name", tag.to_string())];
        match self.call(Method::Delete, "/droplets", &query, None) {
            Ok(_) | Err(CloudError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_tag_is_refused_before_any_request() {
        // Port 1 is closed: reaching the network would be `Unavailable`.
        let d = DigitalOcean::new("http://127.0.0.1:1", "t", Duration::from_secs(1));
        assert!(matches!(
            d.delete_by_tag(" "),
            Err(CloudError::Rejected { status: 400, .. })
        ));
        assert_eq!(d.calls_sent(), 0);
    }
}
