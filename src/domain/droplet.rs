//! The droplet as vpsd knows it: one type for what a cloud provider reports, what
//! the sandbox simulates and what a provisioning task remembers, so an observation
//! is copied, never translated field by field.

use serde::{Deserialize, Serialize};

use super::time::Millis;
use super::wire::wire_enum;

wire_enum!(
    /// A droplet's status as last observed. Records store the wire name (see
    /// [`super::wire`]), so variants can be added without a record migration.
    ///
    /// `new | active | off | archive` are DigitalOcean's. `deleted` is vpsd's own
    /// observation (no droplet carries the order's tag any more, SPEC §9) and is
    /// never taken from a provider. `unknown` stands for any status DigitalOcean
    /// may add later: the set stays closed, so no provider text reaches records or
    /// JSON unchecked, and provisioning keeps waiting on it (bounded by the
    /// attempt budget) as it does on `new`. The raw text is logged where it is seen.
    text DropletStatus {
        New => "new",
        Active => "active",
        Off => "off",
        Archive => "archive",
        Deleted => "deleted",
        Unknown => "unknown",
    }
);

wire_enum!(
    /// A droplet action vpsd owes after a status change (SPEC §9), shown on the
    /// task as `pendingAction`.
    text DropletAction {
        PowerOff => "power_off",
        PowerOn => "power_on",
        Delete => "delete",
    }
);

impl DropletAction {
    /// The status that confirms the action is in effect.
    pub fn target(self) -> DropletStatus {
        match self {
            DropletAction::PowerOff => DropletStatus::Off,
            DropletAction::PowerOn => DropletStatus::Active,
            DropletAction::Delete => DropletStatus::Deleted,
        }
    }
}

impl DropletStatus {
    /// Reads a provider's status text; see the type's documentation for why
    /// anything but the four documented statuses becomes `Unknown`.
    pub fn from_provider(text: &str) -> DropletStatus {
        match text {
            "new" => DropletStatus::New,
            "active" => DropletStatus::Active,
            "off" => DropletStatus::Off,
            "archive" => DropletStatus::Archive,
            _ => DropletStatus::Unknown,
        }
    }
}

/// A droplet as observed. Field meanings follow DigitalOcean's droplet object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Droplet {
    pub id: u64,
    pub name: String,
    pub status: DropletStatus,
    pub tags: Vec<String>,
    /// When the provider created it; `None` if the provider did not say.
    pub created_at: Option<Millis>,
    /// Can lag behind `active` on DigitalOcean, hence optional even when running.
    pub ipv4_public: Option<String>,
    pub ipv4_private: Option<String>,
    pub ipv6_public: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_statuses_map_and_strangers_are_unknown() {
        for s in ["new", "active", "off", "archive"] {
            assert_eq!(DropletStatus::from_provider(s).as_str(), s);
        }
        assert_eq!(
            DropletStatus::from_provider("deleted"),
            DropletStatus::Unknown
        );
        assert_eq!(
            DropletStatus::from_provider("rebuilding"),
            DropletStatus::Unknown
        );
        for s in DropletStatus::ALL {
            assert_eq!(DropletStatus::parse(s.as_str()), Some(*s));
        }
    }
}
