//! Which backends a load balancer routes to, and with what weights: a pure function of
//! the server groups' state, so it is tested without processes or listeners.
//!
//! A load balancer routes to the enabled server groups (of its account) that name it,
//! and within each only to `Up` instances. By default a group's weight is its number of
//! `Up` instances, so traffic follows capacity; weights set by `set_weights` replace that
//! (a group not named gets none) until they are cleared.
//!
//! Handing those tables to the listeners whenever groups, health, enablement or weights
//! change is the crate-internal `traffic` part.

mod traffic;

use std::collections::BTreeMap;

pub(crate) use traffic::Traffic;

use crate::lb::{Backend, BackendGroup};

/// What routing needs to know of one server group.
#[derive(Debug, Clone)]
pub struct GroupRoutes {
    /// The server group.
    pub name: String,
    /// Its account.
    pub account: String,
    /// Whether it is enabled.
    pub enabled: bool,
    /// The load balancers it joins while enabled.
    pub load_balancers: Vec<String>,
    /// Its `Up` instances.
    pub up: Vec<Backend>,
}

/// The routing table of load balancer `name` in `account`.
pub fn routing_table(
    account: &str,
    name: &str,
    groups: &[GroupRoutes],
    weights: &BTreeMap<String, u32>,
) -> Vec<BackendGroup> {
    let mut table: Vec<BackendGroup> = groups
        .iter()
        .filter(|g| g.enabled && g.account == account && g.load_balancers.iter().any(|l| l == name))
        .map(|g| {
            let weight = if weights.is_empty() {
                u32::try_from(g.up.len()).unwrap_or(u32::MAX)
            } else {
                weights.get(&g.name).copied().unwrap_or(0)
            };
            BackendGroup {
                server_group: g.name.clone(),
                weight,
                backends: g.up.clone(),
            }
        })
        .collect();
    table.sort_by(|a, b| a.server_group.cmp(&b.server_group));
    table
}

/// Traffic share per server group in percent (summing to 100 when any group can take
/// traffic): groups with weight and at least one backend share by weight, rounded by
/// largest remainder.
pub fn shares(table: &[BackendGroup]) -> BTreeMap<String, u32> {
    let live = |g: &BackendGroup| {
        if g.backends.is_empty() {
            0
        } else {
            u64::from(g.weight)
        }
    };
    let total: u64 = table.iter().map(live).sum();
    let mut shares: BTreeMap<String, u32> = BTreeMap::new();
    if total == 0 {
        for group in table {
            shares.insert(group.server_group.clone(), 0);
        }
        return shares;
    }
    let mut remainders = Vec::new();
    let mut given = 0u64;
    for group in table {
        let exact = live(group) * 100;
        let whole = exact / total;
        given += whole;
        remainders.push((exact % total, group.server_group.clone()));
        shares.insert(
            group.server_group.clone(),
            u32::try_from(whole).unwrap_or(100),
        );
    }
    // Largest remainders first; ties by name so the result is stable.
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    for (_, name) in remainders
        .into_iter()
        .take(usize::try_from(100 - given).unwrap_or(0))
    {
        if let Some(share) = shares.get_mut(&name) {
            *share += 1;
        }
    }
    shares
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn group(name: &str, enabled: bool, lbs: &[&str], up: usize) -> GroupRoutes {
        GroupRoutes {
            name: name.to_owned(),
            account: "local".to_owned(),
            enabled,
            load_balancers: lbs.iter().map(|s| (*s).to_owned()).collect(),
            up: (0..up)
                .map(|i| Backend {
                    instance_id: format!("{name}-{i}"),
                    address: format!("127.0.0.1:{}", 10000 + i).parse().unwrap(),
                })
                .collect(),
        }
    }

    #[test]
    fn default_weights_follow_up_instances_of_enabled_attached_groups() {
        let groups = [
            group("shop-v001", true, &["front"], 3),
            group("shop-v002", true, &["front", "other"], 1),
            group("shop-v003", false, &["front"], 2),
            group("shop-v004", true, &["other"], 2),
        ];
        let table = routing_table("local", "front", &groups, &BTreeMap::new());
        let weights: Vec<(&str, u32, usize)> = table
            .iter()
            .map(|g| (g.server_group.as_str(), g.weight, g.backends.len()))
            .collect();
        assert_eq!(weights, [("shop-v001", 3, 3), ("shop-v002", 1, 1)]);
        assert_eq!(
            shares(&table),
            BTreeMap::from([("shop-v001".to_owned(), 75), ("shop-v002".to_owned(), 25)])
        );
        // Another account's load balancer of the same name gets nothing.
        assert!(routing_table("prod", "front", &groups, &BTreeMap::new()).is_empty());
    }

    #[test]
    fn overrides_replace_defaults_and_unnamed_groups_get_none() {
        let groups = [
            group("a-v001", true, &["lb"], 3),
            group("a-v002", true, &["lb"], 1),
            group("a-v003", true, &["lb"], 1),
        ];
        let overrides = BTreeMap::from([("a-v001".to_owned(), 1), ("a-v002".to_owned(), 2)]);
        let table = routing_table("local", "lb", &groups, &overrides);
        let weights: Vec<u32> = table.iter().map(|g| g.weight).collect();
        assert_eq!(weights, [1, 2, 0]);
        let shares = shares(&table);
        assert_eq!(shares.values().sum::<u32>(), 100);
        assert_eq!(shares["a-v001"], 33);
        assert_eq!(shares["a-v002"], 67);
        assert_eq!(shares["a-v003"], 0);
    }

    #[test]
    fn no_live_backend_means_no_share() {
        let groups = [group("a-v001", true, &["lb"], 0)];
        let table = routing_table("local", "lb", &groups, &BTreeMap::new());
        assert_eq!(table.len(), 1);
        assert_eq!(shares(&table)["a-v001"], 0);
    }
}
