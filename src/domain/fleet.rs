//! Where a new server goes when the shop runs several DigitalOcean accounts
//! (SPEC §13): pure rules over what vpsd last learnt of each account, so
//! placement can be property-tested without a cloud.
//!
//! An account's free slots are its limit (DigitalOcean's `droplet_limit`,
//! lowered by the operator's `max_droplets`) minus the droplets it holds
//! (every droplet, vpsd's or not) minus the servers placed on it that the
//! last count has not seen yet. Counting those placements is what keeps two
//! orders from taking the last slot between two counts.

/// The account a v1 single token becomes, and the one tasks made before
/// accounts existed belong to.
pub const DEFAULT_ACCOUNT: &str = "default";

/// What an account name may be (`[a-z0-9-]{1,32}`): the data refers to it,
/// paths carry it, and it labels metrics.
pub const ACCOUNT_NAME_RULE: &str = "must be 1-32 characters of a-z, 0-9 and -";

/// Whether `name` follows [`ACCOUNT_NAME_RULE`].
pub fn is_account_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// What the last check of an account found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Ok,
    /// The token was refused (401): nothing is placed until a reload fixes it.
    Unauthorized,
    /// The account's `status` is not `active`.
    Locked,
    /// 5xx or no answer: nothing is placed until it answers.
    Unreachable,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Unauthorized => "unauthorized",
            Health::Locked => "locked",
            Health::Unreachable => "unreachable",
        }
    }
}

/// One account as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    /// Lower is preferred.
    pub priority: i64,
    /// Regions the account may serve; empty means any.
    pub regions: Vec<String>,
    /// No new servers; its servers keep working.
    pub drain: bool,
    pub health: Health,
    /// DigitalOcean's `droplet_limit`; `None` until the first check answered.
    pub droplet_limit: Option<u64>,
    /// The operator's cap below DigitalOcean's limit.
    pub max_droplets: Option<u64>,
    /// Droplets the account held at the last count.
    pub droplets: u64,
    /// Servers placed here since that count.
    pub placing: u64,
    /// DigitalOcean refused a create for the droplet limit since the last
    /// check: full whatever the counts say, until the next check.
    pub refused_full: bool,
}

impl Account {
    /// Slots a new server may take now; 0 while the limit is unknown.
    pub fn free_slots(&self) -> u64 {
        let Some(limit) = self.droplet_limit else {
            return 0;
        };
        if self.refused_full {
            return 0;
        }
        let limit = self.max_droplets.map_or(limit, |cap| cap.min(limit));
        limit
            .saturating_sub(self.droplets)
            .saturating_sub(self.placing)
    }

    /// Whether the operator lets new servers in `region` go here at all:
    /// not draining, and the region allowed.
    pub fn serves(&self, region: &str) -> bool {
        !self.drain && (self.regions.is_empty() || self.regions.iter().any(|r| r == region))
    }

    /// Whether a new server in `region` may go here now.
    pub fn takes(&self, region: &str) -> bool {
        self.serves(region) && self.health == Health::Ok && self.free_slots() > 0
    }
}

/// The account a new server in `region` goes to: among those that take it,
/// the lowest priority, then the most free slots, then the name (so the
/// choice never depends on the order of the list). `None`: no capacity.
pub fn place<'a>(accounts: &'a [Account], region: &str) -> Option<&'a Account> {
    accounts.iter().filter(|a| a.takes(region)).min_by(|a, b| {
        a.priority
            .cmp(&b.priority)
            .then(b.free_slots().cmp(&a.free_slots()))
            .then(a.name.cmp(&b.name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn account(name: &str, priority: i64, limit: u64, droplets: u64) -> Account {
        Account {
            name: name.into(),
            priority,
            regions: Vec::new(),
            drain: false,
            health: Health::Ok,
            droplet_limit: Some(limit),
            max_droplets: None,
            droplets,
            placing: 0,
            refused_full: false,
        }
    }

    #[test]
    fn priority_first_then_the_most_room() {
        let accounts = [
            account("b", 10, 10, 9),
            account("a", 10, 10, 5),
            account("c", 5, 3, 2),
        ];
        assert_eq!(place(&accounts, "sgp1").map(|a| a.name.as_str()), Some("c"));
        let rest = &accounts[..2];
        assert_eq!(place(rest, "sgp1").map(|a| a.name.as_str()), Some("a"));
    }

    #[test]
    fn nothing_goes_where_it_may_not() {
        let full = account("full", 1, 3, 3);
        let drained = Account {
            drain: true,
            ..account("drained", 1, 10, 0)
        };
        let locked = Account {
            health: Health::Locked,
            ..account("locked", 1, 10, 0)
        };
        let elsewhere = Account {
            regions: vec!["nyc1".into()],
            ..account("elsewhere", 1, 10, 0)
        };
        let unknown = Account {
            droplet_limit: None,
            ..account("unknown", 1, 10, 0)
        };
        let refused = Account {
            refused_full: true,
            ..account("refused", 1, 10, 0)
        };
        let capped = Account {
            max_droplets: Some(4),
            placing: 1,
            ..account("capped", 1, 10, 3)
        };
        let all = [full, drained, locked, elsewhere, unknown, refused, capped];
        assert_eq!(place(&all, "sgp1"), None);
        assert_eq!(
            place(&all, "nyc1").map(|a| a.name.as_str()),
            Some("elsewhere")
        );
    }

    fn accounts() -> impl Strategy<Value = Vec<Account>> {
        let one = (0i64..3, 0u64..6, 0u64..6, any::<bool>(), 0u8..6).prop_map(
            |(priority, limit, droplets, drain, health)| Account {
                drain: drain && health == 0,
                health: match health {
                    1 => Health::Unauthorized,
                    2 => Health::Locked,
                    3 => Health::Unreachable,
                    _ => Health::Ok,
                },
                ..account("", priority, limit, droplets)
            },
        );
        prop::collection::vec(one, 0..5).prop_map(|mut all| {
            for (n, a) in all.iter_mut().enumerate() {
                a.name = format!("acct-{n}");
            }
            all
        })
    }

    proptest! {
        /// Orders placed one after another, each counted as placing on its
        /// account: exactly min(orders, free slots) are placed, never past
        /// a limit, and each on a best account at its moment.
        #[test]
        fn placements_fill_exactly_the_free_slots(mut all in accounts(), orders in 0usize..30) {
            let free: u64 = all.iter().filter(|a| a.takes("sgp1")).map(Account::free_slots).sum();
            let mut placed = 0u64;
            for _ in 0..orders {
                let Some(chosen) = place(&all, "sgp1").map(|a| a.name.clone()) else { break };
                let best = all.iter().filter(|a| a.takes("sgp1")).map(|a| a.priority).min();
                let account = all.iter_mut().find(|a| a.name == chosen).expect("chosen exists");
                prop_assert_eq!(Some(account.priority), best);
                account.placing += 1;
                placed += 1;
            }
            prop_assert_eq!(placed, free.min(orders as u64));
            for a in &all {
                if let Some(limit) = a.droplet_limit {
                    prop_assert!(a.placing == 0 || a.droplets + a.placing <= limit);
                }
            }
        }
    }
}
