//! DigitalOcean's JSON: the request bodies vpsd sends and the answers it
//! reads, per the published API description, mapped to vpsd's own types.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::cloud::{ActionInfo, ActionStatus, CloudError, DropletSpec, RECENT_ACTIONS};
use crate::domain::customer_action::ActionType;
use crate::domain::droplet::{Droplet, DropletStatus};
use crate::domain::time::parse_rfc3339;

pub(super) fn unparseable(what: &str, e: serde_json::Error) -> CloudError {
    CloudError::Unavailable(format!("unparseable {what} answer: {e}"))
}

#[derive(Deserialize)]
pub(super) struct DropletJson {
    pub(super) id: u64,
    #[serde(default)]
    pub(super) name: Option<String>,
    pub(super) status: String,
    #[serde(default)]
    pub(super) tags: Option<Vec<String>>,
    #[serde(default)]
    pub(super) created_at: Option<String>,
    #[serde(default)]
    pub(super) networks: Option<NetworksJson>,
}

#[derive(Deserialize, Default)]
pub(super) struct NetworksJson {
    #[serde(default)]
    pub(super) v4: Option<Vec<NetworkJson>>,
    #[serde(default)]
    pub(super) v6: Option<Vec<NetworkJson>>,
}

#[derive(Deserialize)]
pub(super) struct NetworkJson {
    #[serde(default)]
    pub(super) ip_address: Option<String>,
    #[serde(rename = "type", default)]
    pub(super) kind: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct ActionLink {
    pub(super) id: u64,
    #[serde(default)]
    pub(super) rel: Option<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct CreateLinks {
    #[serde(default)]
    pub(super) actions: Option<Vec<ActionLink>>,
}

#[derive(Deserialize)]
pub(super) struct CreateResponse {
    pub(super) droplet: DropletJson,
    #[serde(default)]
    pub(super) links: Option<CreateLinks>,
}

#[derive(Deserialize)]
pub(super) struct GetResponse {
    pub(super) droplet: DropletJson,
}

#[derive(Deserialize, Default)]
pub(super) struct Pages {
    #[serde(default)]
    pub(super) next: Option<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct PageLinks {
    #[serde(default)]
    pub(super) pages: Option<Pages>,
}

#[derive(Deserialize, Default)]
pub(super) struct Meta {
    #[serde(default)]
    pub(super) total: Option<u64>,
}

#[derive(Deserialize)]
pub(super) struct ListResponse {
    #[serde(default)]
    pub(super) droplets: Option<Vec<DropletJson>>,
    #[serde(default)]
    pub(super) links: Option<PageLinks>,
    #[serde(default)]
    pub(super) meta: Option<Meta>,
}

#[derive(Deserialize)]
pub(super) struct ActionJson {
    pub(super) status: String,
}

#[derive(Deserialize)]
pub(super) struct ActionResponse {
    pub(super) action: ActionJson,
}

/// An action object (`actions/models/action.yml`), as listed or as answered
/// to a `POST /v2/droplets/{id}/actions`.
#[derive(Deserialize)]
pub(super) struct ListedAction {
    pub(super) id: u64,
    pub(super) status: String,
    #[serde(rename = "type", default)]
    pub(super) kind: Option<String>,
    #[serde(default)]
    pub(super) started_at: Option<String>,
}

impl ListedAction {
    pub(super) fn into_info(self) -> Result<ActionInfo, CloudError> {
        Ok(ActionInfo {
            id: self.id,
            status: action_status(&self.status)?,
            kind: self.kind.unwrap_or_default(),
            started_at: self.started_at.as_deref().and_then(parse_rfc3339),
        })
    }
}

/// `droplets/responses/droplet_action.yml`: `{"action": {..}}` with status 201.
#[derive(Deserialize)]
pub(super) struct PostedActionResponse {
    pub(super) action: ListedAction,
}

#[derive(Deserialize)]
pub(super) struct ActionListResponse {
    #[serde(default)]
    pub(super) actions: Option<Vec<ListedAction>>,
    #[serde(default)]
    pub(super) links: Option<PageLinks>,
}

pub(super) fn action_status(status: &str) -> Result<ActionStatus, CloudError> {
    match status {
        "in-progress" => Ok(ActionStatus::InProgress),
        "completed" => Ok(ActionStatus::Completed),
        "errored" => Ok(ActionStatus::Errored),
        other => Err(CloudError::Unavailable(format!(
            "unknown action status {other:?}"
        ))),
    }
}

pub(super) fn first_ip(nets: &Option<Vec<NetworkJson>>, kind: &str) -> Option<String> {
    nets.as_deref()?
        .iter()
        .find(|n| {
            n.kind.as_deref() == Some(kind)
                && n.ip_address.as_deref().is_some_and(|ip| !ip.is_empty())
        })
        .and_then(|n| n.ip_address.clone())
}

impl DropletJson {
    pub(super) fn into_droplet(self) -> Droplet {
        let networks = self.networks.unwrap_or_default();
        let status = DropletStatus::from_provider(&self.status);
        if status == DropletStatus::Unknown {
            tracing::warn!(droplet_id = self.id, status = %self.status, "DigitalOcean reported a droplet status vpsd does not know; waiting on it like `new`");
        }
        Droplet {
            id: self.id,
            name: self.name.unwrap_or_default(),
            status,
            tags: self.tags.unwrap_or_default(),
            created_at: self.created_at.as_deref().and_then(parse_rfc3339),
            ipv4_public: first_ip(&networks.v4, "public"),
            ipv4_private: first_ip(&networks.v4, "private"),
            ipv6_public: first_ip(&networks.v6, "public"),
        }
    }
}

/// The request body per `droplet_single_create.yml`: optional fields that do not
/// allow `null` (`user_data`) are left out rather than sent as null.
pub(super) fn create_body(spec: &DropletSpec) -> Value {
    let mut body = Map::new();
    body.insert("name".into(), json!(spec.name));
    body.insert("region".into(), json!(spec.region));
    body.insert("size".into(), json!(spec.size));
    body.insert("image".into(), json!(spec.image));
    body.insert("tags".into(), json!(spec.tags));
    body.insert("monitoring".into(), json!(spec.monitoring));
    body.insert("ipv6".into(), json!(spec.ipv6));
    if let Some(user_data) = &spec.user_data {
        body.insert("user_data".into(), json!(user_data));
    }
    Value::Object(body)
}

/// The request body per `droplet_actions.yml#/droplet_action`: power actions
/// take nothing but their `type`; a rebuild names its image by slug.
pub(super) fn action_body(kind: ActionType, image: Option<&str>) -> Value {
    match image {
        Some(slug) => json!({ "type": kind.as_str(), "image": slug }),
        None => json!({ "type": kind.as_str() }),
    }
}

/// The most recent actions first, at most [`RECENT_ACTIONS`]. DigitalOcean
/// already lists newest first; sorting by id (allocated increasingly) keeps
/// the promise whatever order a page comes in.
pub(super) fn recent_first(actions: Vec<ListedAction>) -> Result<Vec<ActionInfo>, CloudError> {
    let mut out = actions
        .into_iter()
        .map(ListedAction::into_info)
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_by_key(|a| std::cmp::Reverse(a.id));
    out.truncate(RECENT_ACTIONS);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_body_omits_absent_user_data() {
        let spec = DropletSpec {
            name: "web-1".into(),
            region: "sgp1".into(),
            size: "s-1vcpu-1gb".into(),
            image: "ubuntu-24-04-x64".into(),
            tags: vec!["vpsd".into()],
            monitoring: true,
            ipv6: false,
            user_data: None,
        };
        let body = create_body(&spec);
        assert!(body.get("user_data").is_none());
        assert_eq!(body["tags"], json!(["vpsd"]));
    }

    #[test]
    fn action_bodies_are_the_type_and_a_rebuilds_image() {
        assert_eq!(
            action_body(ActionType::PowerOff, None),
            json!({"type": "power_off"})
        );
        assert_eq!(
            action_body(ActionType::Reboot, None),
            json!({"type": "reboot"})
        );
        assert_eq!(
            action_body(ActionType::Rebuild, Some("ubuntu-24-04-x64")),
            json!({"type": "rebuild", "image": "ubuntu-24-04-x64"})
        );
    }

    #[test]
    fn posted_action_answer_parses_per_schema() {
        // The shape of `droplets/responses/droplet_action.yml`.
        let parsed: PostedActionResponse = serde_json::from_value(json!({"action": {
            "id": 36804751, "status": "in-progress", "type": "power_off",
            "started_at": "2020-11-14T16:31:07Z", "completed_at": null,
            "resource_id": 3164450, "resource_type": "droplet", "region_slug": "nyc3"
        }}))
        .unwrap();
        let info = parsed.action.into_info().unwrap();
        assert_eq!(info.id, 36804751);
        assert_eq!(info.kind, "power_off");
        assert_eq!(info.status, ActionStatus::InProgress);
        assert_eq!(info.started_at, parse_rfc3339("2020-11-14T16:31:07Z"));
    }

    #[test]
    fn action_list_comes_back_newest_first_and_bounded() {
        let mut listed: Vec<Value> = (1..=30u64)
            .map(|id| json!({"id": id, "status": "completed", "type": "power_on"}))
            .collect();
        listed.push(json!({"id": 31, "status": "errored", "type": "power_off",
            "started_at": null}));
        let parsed: ActionListResponse = serde_json::from_value(json!({
            "actions": listed, "links": {}, "meta": {"total": 31}
        }))
        .unwrap();
        let out = recent_first(parsed.actions.unwrap()).unwrap();
        assert_eq!(out.len(), RECENT_ACTIONS);
        assert_eq!(out[0].id, 31);
        assert_eq!(out[0].status, ActionStatus::Errored);
        assert_eq!(out[0].started_at, None);
        assert!(out.windows(2).all(|w| w[0].id > w[1].id));
    }

    #[test]
    fn statuses_do_may_add_later_are_unknown() {
        let d: DropletJson =
            serde_json::from_value(json!({"id": 2, "status": "rebuilding"})).unwrap();
        let d = d.into_droplet();
        assert_eq!(d.status, DropletStatus::Unknown);
        assert_eq!(d.created_at, None);
    }

    #[test]
    fn parses_networks() {
        let d: DropletJson = serde_json::from_value(json!({
            "id": 1, "name": "a", "status": "active", "tags": null,
            "created_at": "2024-01-15T10:00:00Z",
            "networks": {"v4": [
                {"ip_address": "10.1.2.3", "type": "private", "gateway": "nil"},
                {"ip_address": "192.0.2.1", "type": "public"}
            ], "v6": [{"ip_address": "2001:db8::1", "netmask": 64, "type": "public"}]}
        }))
        .unwrap();
        let d = d.into_droplet();
        assert_eq!(d.status, DropletStatus::Active);
        assert_eq!(d.created_at, Some(1_705_312_800_000));
        assert_eq!(d.ipv4_public.as_deref(), Some("192.0.2.1"));
        assert_eq!(d.ipv4_private.as_deref(), Some("10.1.2.3"));
        assert_eq!(d.ipv6_public.as_deref(), Some("2001:db8::1"));
        assert!(d.tags.is_empty());
    }
}

/// `GET /v2/account`.
#[derive(Debug, Deserialize)]
pub(super) struct AccountResponse {
    pub(super) account: AccountBody,
}

#[derive(Debug, Deserialize)]
pub(super) struct AccountBody {
    pub(super) droplet_limit: u64,
    #[serde(default)]
    pub(super) status: Option<String>,
}
