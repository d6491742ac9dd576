//! Redis's `INFO` reply, read into the figures a CacheTier's status reports.

use std::collections::HashMap;

/// What the operator reads from `INFO`: every field is optional, since a Redis of another
/// version, or a section it leaves out, must not fail the reconcile.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Info {
    pub used_memory: Option<i64>,
    pub used_memory_human: Option<String>,
    pub keyspace_hits: Option<i64>,
    pub keyspace_misses: Option<i64>,
    pub evicted_keys: Option<i64>,
    pub connected_clients: Option<i32>,
    pub ops_per_second: Option<f64>,
    pub role: Option<String>,
    /// On a primary: the replicas connected, and how many of them are `online`.
    pub connected_replicas: Option<i32>,
    pub online_replicas: i32,
    /// On a replica: whether its link to the primary is up.
    pub master_link_up: Option<bool>,
}

impl Info {
    /// Reads the `field:value` lines of an `INFO` reply; sections, comments and fields not
    /// listed above are skipped.
    pub fn parse(reply: &str) -> Self {
        let fields: HashMap<&str, &str> = reply
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once(':'))
            .collect();
        let int = |k: &str| fields.get(k).and_then(|v| v.parse::<i64>().ok());
        // Replicas appear as `slave0:ip=…,port=…,state=online,offset=…,lag=0`.
        let online_replicas = fields
            .iter()
            .filter(|(k, _)| {
                k.strip_prefix("slave")
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
            .filter(|(_, v)| v.split(',').any(|kv| kv == "state=online"))
            .count();
        Self {
            used_memory: int("used_memory"),
            used_memory_human: fields.get("used_memory_human").map(|s| (*s).to_owned()),
            keyspace_hits: int("keyspace_hits"),
            keyspace_misses: int("keyspace_misses"),
            evicted_keys: int("evicted_keys"),
            connected_clients: int("connected_clients").and_then(|n| i32::try_from(n).ok()),
            ops_per_second: fields
                .get("instantaneous_ops_per_sec")
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite()),
            role: fields.get("role").map(|s| (*s).to_owned()),
            connected_replicas: int("connected_slaves").and_then(|n| i32::try_from(n).ok()),
            online_replicas: i32::try_from(online_replicas).unwrap_or(i32::MAX),
            master_link_up: fields.get("master_link_status").map(|s| *s == "up"),
        }
    }

    /// hits / (hits + misses); none before the first lookup, where a ratio would be a
    /// made-up 0 or 1.
    pub fn hit_ratio(&self) -> Option<f64> {
        let hits = self.keyspace_hits?;
        let misses = self.keyspace_misses?;
        let total = hits.checked_add(misses)?;
        (total > 0).then(|| hits as f64 / total as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIMARY: &str = "# Server\r\nredis_version:7.0.15\r\n\r\n# Clients\r\nconnected_clients:7\r\n\r\n# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\n\r\n# Stats\r\ninstantaneous_ops_per_sec:42\r\nkeyspace_hits:300\r\nkeyspace_misses:100\r\nevicted_keys:5\r\n\r\n# Replication\r\nrole:master\r\nconnected_slaves:2\r\nslave0:ip=10.0.0.2,port=6379,state=online,offset=10,lag=0\r\nslave1:ip=10.0.0.3,port=6379,state=wait_bgsave,offset=0,lag=0\r\nslave_read_only:1\r\n";

    #[test]
    fn a_primary_reports_memory_hits_clients_and_its_replicas() {
        let info = Info::parse(PRIMARY);
        assert_eq!(info.used_memory, Some(1_048_576));
        assert_eq!(info.used_memory_human.as_deref(), Some("1.00M"));
        assert_eq!(info.connected_clients, Some(7));
        assert_eq!(info.ops_per_second, Some(42.0));
        assert_eq!(info.evicted_keys, Some(5));
        assert_eq!(info.hit_ratio(), Some(0.75));
        assert_eq!(info.role.as_deref(), Some("master"));
        // `slave_read_only` is not a replica line.
        assert_eq!(
            (info.connected_replicas, info.online_replicas),
            (Some(2), 1)
        );
        assert_eq!(info.master_link_up, None);
    }

    #[test]
    fn no_lookups_yet_is_no_ratio_rather_than_zero() {
        let info = Info::parse("keyspace_hits:0\nkeyspace_misses:0\n");
        assert_eq!(info.hit_ratio(), None);
        assert_eq!(Info::parse("").hit_ratio(), None);
    }

    #[test]
    fn a_replica_reports_its_link_and_garbage_is_skipped() {
        let info = Info::parse("role:slave\nmaster_link_status:down\nused_memory:lots\nnonsense\n");
        assert_eq!(info.master_link_up, Some(false));
        assert_eq!(info.used_memory, None);
    }
}
