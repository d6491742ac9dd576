//! Configuration from the environment, the contract with the operator's Deployments:
//! `PORT`, `DATABASE_URL`, `REDIS_URL` (and `REDIS_PASSWORD`, which the operator passes by
//! reference to the cache tier's Secret, never inside the URL), `CACHE_KEY_PREFIX` and one
//! `<PEER>_URL` per peer.

use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("missing environment variable {name}: {hint}")]
    Missing { name: String, hint: &'static str },
    #[error("invalid environment variable {name}={value:?}: {reason}")]
    Invalid {
        name: String,
        value: String,
        reason: String,
    },
}

#[derive(Clone, PartialEq)]
pub struct Config {
    pub service: String,
    pub port: u16,
    pub database_url: String,
    /// A Postgres schema to keep this service's tables in (the monolith hosts four services
    /// on one database); `None` uses the connection's default.
    pub database_schema: Option<String>,
    pub database_max_connections: u32,
    /// `None` runs without a cache: every read goes to Postgres.
    pub redis_url: Option<String>,
    pub cache_key_prefix: String,
    pub cache_ttl: Duration,
    /// Peer domain → base URL (no trailing slash).
    pub peers: BTreeMap<String, String>,
    pub body_limit_bytes: usize,
    /// How long shutdown waits for in-flight requests before it gives up on them.
    pub shutdown_grace: Duration,
}

/// Credentials never reach a log through `{:?}`.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("service", &self.service)
            .field("port", &self.port)
            .field("database_url", &redact(&self.database_url))
            .field("database_schema", &self.database_schema)
            .field("database_max_connections", &self.database_max_connections)
            .field("redis_url", &self.redis_url.as_deref().map(redact))
            .field("cache_key_prefix", &self.cache_key_prefix)
            .field("cache_ttl", &self.cache_ttl)
            .field("peers", &self.peers)
            .field("body_limit_bytes", &self.body_limit_bytes)
            .field("shutdown_grace", &self.shutdown_grace)
            .finish()
    }
}

impl Config {
    /// Reads the process environment. `peers` are the domains this service calls.
    pub fn from_env(service: &str, peers: &[&str]) -> Result<Self, ConfigError> {
        Self::from_lookup(service, peers, |name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(
        service: &str,
        peers: &[&str],
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let port = parse_or(&get, "PORT", 8080u16)?;
        let database_url = get("DATABASE_URL").ok_or(ConfigError::Missing {
            name: "DATABASE_URL".into(),
            hint: "a PostgreSQL URL such as postgres://user@host:5432/db",
        })?;
        if !(database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")) {
            return Err(ConfigError::Invalid {
                name: "DATABASE_URL".into(),
                value: redact(&database_url),
                reason: "must start with postgres:// or postgresql://".into(),
            });
        }
        let redis_url = get("REDIS_URL");
        if let Some(url) = &redis_url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return Err(ConfigError::Invalid {
                name: "REDIS_URL".into(),
                value: redact(url),
                reason: "must start with redis:// or rediss://".into(),
            });
        }
        // The operator gives the cache tier's password apart from its address; a URL with
        // credentials of its own keeps them.
        let redis_url = match (redis_url, get("REDIS_PASSWORD")) {
            (Some(url), Some(password)) if !url.contains('@') => {
                let (scheme, rest) = url.split_once("://").unwrap_or(("redis", url.as_str()));
                Some(format!("{scheme}://:{}@{rest}", percent_encode(&password)))
            }
            (url, _) => url,
        };
        let database_schema = get("DATABASE_SCHEMA");
        if let Some(schema) = &database_schema
            && !is_identifier(schema)
        {
            return Err(ConfigError::Invalid {
                name: "DATABASE_SCHEMA".into(),
                value: schema.clone(),
                reason: "must be a lower-case identifier ([a-z_][a-z0-9_]*)".into(),
            });
        }
        let mut peer_urls = BTreeMap::new();
        for peer in peers {
            let name = format!("{}_URL", peer.to_uppercase().replace('-', "_"));
            // By convention a service is named after its domain and listens on 8080: the
            // address the operator injects once the peer exists.
            let url = get(&name).unwrap_or_else(|| format!("http://{peer}:8080"));
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::Invalid {
                    name,
                    value: url,
                    reason: "must be an http:// or https:// URL".into(),
                });
            }
            peer_urls.insert((*peer).to_owned(), url.trim_end_matches('/').to_owned());
        }
        let max_connections = parse_or(&get, "DATABASE_MAX_CONNECTIONS", 10u32)?;
        if max_connections == 0 {
            return Err(ConfigError::Invalid {
                name: "DATABASE_MAX_CONNECTIONS".into(),
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        Ok(Self {
            service: service.to_owned(),
            port,
            database_url,
            database_schema,
            database_max_connections: max_connections,
            redis_url,
            cache_key_prefix: get("CACHE_KEY_PREFIX").unwrap_or_else(|| format!("{service}:")),
            cache_ttl: Duration::from_secs(parse_or(&get, "CACHE_TTL_SECONDS", 60u64)?),
            peers: peer_urls,
            body_limit_bytes: parse_or(&get, "BODY_LIMIT_BYTES", 64 * 1024usize)?,
            shutdown_grace: Duration::from_secs(parse_or(&get, "SHUTDOWN_GRACE_SECONDS", 20u64)?),
        })
    }

    /// The base URL of peer `domain`, as configured.
    pub fn peer(&self, domain: &str) -> Option<&str> {
        self.peers.get(domain).map(String::as_str)
    }
}

fn parse_or<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match get(name) {
        None => Ok(default),
        Some(value) => value
            .trim()
            .parse()
            .map_err(|e: T::Err| ConfigError::Invalid {
                name: name.to_owned(),
                value,
                reason: e.to_string(),
            }),
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && s.len() <= 63
}

/// Keeps passwords out of error messages and logs.
/// `s` as URL userinfo: everything but the unreserved characters percent-encoded.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn the_operators_redis_password_joins_the_url_and_never_shows_in_debug() {
        let c = Config::from_lookup(
            "orders",
            &[],
            env(&[
                ("DATABASE_URL", "postgres://db/x"),
                ("REDIS_URL", "redis://hot-redis.shop.svc.cluster.local:6379"),
                ("REDIS_PASSWORD", "p@ss/word"),
            ]),
        )
        .expect("valid");
        assert_eq!(
            c.redis_url.as_deref(),
            Some("redis://:p%40ss%2Fword@hot-redis.shop.svc.cluster.local:6379")
        );
        assert!(!format!("{c:?}").contains("p%40ss"), "{c:?}");
        // Credentials already in the URL stay as they are.
        let own = Config::from_lookup(
            "orders",
            &[],
            env(&[
                ("DATABASE_URL", "postgres://db/x"),
                ("REDIS_URL", "redis://:mine@r:6379"),
                ("REDIS_PASSWORD", "other"),
            ]),
        )
        .expect("valid");
        assert_eq!(own.redis_url.as_deref(), Some("redis://:mine@r:6379"));
    }

    #[test]
    fn a_missing_database_url_is_named() {
        let err = Config::from_lookup("users", &[], env(&[])).expect_err("missing");
        assert!(err.to_string().contains("DATABASE_URL"), "{err}");
    }

    #[test]
    fn a_bad_port_is_named_with_its_value() {
        let err = Config::from_lookup(
            "users",
            &[],
            env(&[("DATABASE_URL", "postgres://x/y"), ("PORT", "eighty")]),
        )
        .expect_err("bad port");
        assert!(err.to_string().contains("PORT=\"eighty\""), "{err}");
    }

    #[test]
    fn defaults_and_peers() {
        let c = Config::from_lookup(
            "orders",
            &["inventory", "payments"],
            env(&[
                ("DATABASE_URL", "postgres://x/y"),
                ("INVENTORY_URL", "http://inv:9000/"),
            ]),
        )
        .expect("valid");
        assert_eq!(c.port, 8080);
        assert_eq!(c.redis_url, None);
        assert_eq!(c.cache_key_prefix, "orders:");
        assert_eq!(c.peer("inventory"), Some("http://inv:9000"));
        assert_eq!(c.peer("payments"), Some("http://payments:8080"));
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        let err = Config::from_lookup("x", &[], env(&[("DATABASE_URL", "mysql://u:pw@h/db")]))
            .expect_err("scheme");
        assert!(!err.to_string().contains("pw@"), "{err}");
    }
}
