//! The sandbox's state file: its droplets and their actions as JSON beside
//! the data file, so simulated servers outlive a restart like real ones.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{ActionRecord, DropletActionRecord, Entry, State};
use crate::domain::customer_action::ActionType;
use crate::domain::droplet::{Droplet, DropletStatus};
use crate::domain::time::{format_millis, parse_rfc3339};

/// A droplet as written to the state file. The fields after `action_id` came
/// with droplet actions and deletes by tag; they default when absent, so files
/// from before still load, and older builds ignore them.
#[derive(Serialize, Deserialize)]
pub(super) struct Saved {
    id: u64,
    name: String,
    tags: Vec<String>,
    /// RFC 3339, so the file stays readable by eye.
    created_at: Option<String>,
    ipv4_public: Option<String>,
    ipv4_private: Option<String>,
    ipv6_public: Option<String>,
    created_ms: i64,
    action_id: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    power_actions: Vec<SavedAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deleting_since_ms: Option<i64>,
}

#[derive(Serialize, Deserialize)]
struct SavedAction {
    id: u64,
    /// DigitalOcean's action type: `power_off`, `reboot`, `rebuild`, ...
    #[serde(rename = "type")]
    kind: String,
    started_ms: i64,
}

impl Saved {
    pub(super) fn from_entry(e: &Entry) -> Saved {
        Saved {
            id: e.booted.id,
            name: e.booted.name.clone(),
            tags: e.booted.tags.clone(),
            created_at: e.booted.created_at.map(format_millis),
            ipv4_public: e.booted.ipv4_public.clone(),
            ipv4_private: e.booted.ipv4_private.clone(),
            ipv6_public: e.booted.ipv6_public.clone(),
            created_ms: e.created_ms,
            action_id: e.action_id,
            power_actions: e
                .actions
                .iter()
                .map(|p| SavedAction {
                    id: p.id,
                    kind: p.kind.as_str().to_string(),
                    started_ms: p.started_ms,
                })
                .collect(),
            deleting_since_ms: e.deleting_since_ms,
        }
    }

    pub(super) fn into_entry(self) -> Entry {
        let id = self.id;
        let actions = self
            .power_actions
            .into_iter()
            .filter_map(|a| match ActionType::parse(&a.kind) {
                Some(kind) => Some(DropletActionRecord {
                    id: a.id,
                    kind,
                    started_ms: a.started_ms,
                }),
                None => {
                    tracing::warn!(droplet_id = id, kind = %a.kind, "sandbox state file names an unknown action; ignored");
                    None
                }
            })
            .collect();
        Entry {
            booted: Droplet {
                id,
                name: self.name,
                status: DropletStatus::Active,
                tags: self.tags,
                created_at: self.created_at.as_deref().and_then(parse_rfc3339),
                ipv4_public: self.ipv4_public,
                ipv4_private: self.ipv4_private,
                ipv6_public: self.ipv6_public,
            },
            created_ms: self.created_ms,
            action_id: self.action_id,
            actions,
            deleting_since_ms: self.deleting_since_ms,
        }
    }
}

impl State {
    pub(super) fn restore(&mut self, saved: Vec<Saved>) {
        for d in saved {
            let entry = d.into_entry();
            self.next_id = self.next_id.max(entry.booted.id + 1);
            self.next_action_id = self.next_action_id.max(entry.action_id + 1);
            self.actions.insert(entry.action_id, ActionRecord::Create);
            for p in &entry.actions {
                self.next_action_id = self.next_action_id.max(p.id + 1);
                let started_ms = p.started_ms;
                self.actions
                    .insert(p.id, ActionRecord::Action { started_ms });
            }
            self.droplets.insert(entry.booted.id, entry);
        }
    }
}

/// The state file's droplets; `Ok(empty)` when there is no file yet.
pub(super) fn load(path: &Path) -> Result<Vec<Saved>, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| e.to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e.to_string()),
    }
}

/// Writes `bytes` to a fresh owner-only (0600) file: a leftover temp file is
/// removed first, because a mode applies only when a file is created.
pub(super) fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(bytes)
}
