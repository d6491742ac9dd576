//! Redis administration for the CacheTier controller: where a tier's Redis is reached
//! (`Resolve`, the one seam between a cluster and this machine), and what the operator does
//! there (`Admin`: live configuration, `INFO`, prefix flushes).

pub mod flush;
pub mod info;

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};

pub use self::flush::{Progress, flush_prefix};
pub use self::info::Info;

/// The address services use to reach a tier, as the cluster's DNS names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// How the operator authenticates to the Redis it reaches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// With the tier's password, from its Secret: what the tier's own Redis requires.
    TierPassword,
    /// Without a password: a local Redis that asks for none.
    None,
    /// With this password: a local Redis with its own.
    Password(String),
}

/// Where the operator actually connects for a tier address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub host: String,
    pub port: u16,
    pub auth: Auth,
}

/// Maps a tier's in-cluster address to where the operator connects. In a cluster that is the
/// address itself; in `dev` and the tests, where no tier pod really runs Redis, a real Redis
/// on this machine, so the administration code runs against a real server everywhere.
pub trait Resolve: Send + Sync + 'static {
    fn resolve(&self, address: &Address) -> Route;
}

/// The cluster's DNS: connect where the services connect.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClusterDns;

impl Resolve for ClusterDns {
    fn resolve(&self, address: &Address) -> Route {
        Route {
            host: address.host.clone(),
            port: address.port,
            auth: Auth::TierPassword,
        }
    }
}

/// Every tier at one Redis of this machine.
#[derive(Clone, Debug)]
pub struct Local {
    pub host: String,
    pub port: u16,
    pub auth: Auth,
}

impl Local {
    /// The Redis at 127.0.0.1:6379, without a password.
    pub fn default_redis() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port: 6379,
            auth: Auth::None,
        }
    }
}

impl Resolve for Local {
    fn resolve(&self, _: &Address) -> Route {
        Route {
            host: self.host.clone(),
            port: self.port,
            auth: self.auth.clone(),
        }
    }
}

/// Errors of the administration. The tier's password never appears in them.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cannot reach Redis at {address}")]
    Connect {
        address: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("Redis at {address} failed {command}")]
    Command {
        address: String,
        command: &'static str,
        #[source]
        source: redis::RedisError,
    },
    #[error("Redis refused the setting {setting}: {message}")]
    Refused { setting: String, message: String },
}

impl CacheError {
    /// Whether Redis is out of reach (as opposed to answering and saying no).
    pub fn is_unreachable(&self) -> bool {
        match self {
            Self::Connect { .. } => true,
            Self::Command { source, .. } => {
                source.is_io_error()
                    || source.is_timeout()
                    || source.is_connection_dropped()
                    || source.is_connection_refusal()
            }
            Self::Refused { .. } => false,
        }
    }
}

/// Timeouts of every administration connection: a cache that hangs must not hold a
/// reconcile for long.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub connect: Duration,
    pub command: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(2),
            command: Duration::from_secs(5),
        }
    }
}

/// A connection to one tier's Redis, for administration.
pub struct Admin {
    connection: MultiplexedConnection,
    address: String,
}

impl Admin {
    /// Connects along `route`; `tier_password` is used when the route asks for the tier's.
    pub async fn connect(
        route: &Route,
        tier_password: Option<&str>,
        timeouts: Timeouts,
    ) -> Result<Self, CacheError> {
        let address = format!("{}:{}", route.host, route.port);
        let connect_error = |source| CacheError::Connect {
            address: address.clone(),
            source,
        };
        let mut redis = RedisConnectionInfo::default();
        match (&route.auth, tier_password) {
            (Auth::TierPassword, Some(p)) => redis = redis.set_password(p),
            (Auth::Password(p), _) => redis = redis.set_password(p),
            (Auth::TierPassword, None) | (Auth::None, _) => {}
        }
        let info = ConnectionAddr::Tcp(route.host.clone(), route.port)
            .into_connection_info()
            .map_err(connect_error)?
            .set_redis_settings(redis);
        let client = redis::Client::open(info).map_err(connect_error)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeouts.connect))
            .set_response_timeout(Some(timeouts.command));
        let connection = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(connect_error)?;
        Ok(Self {
            connection,
            address,
        })
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    fn failed(&self, command: &'static str) -> impl Fn(redis::RedisError) -> CacheError + '_ {
        move |source| CacheError::Command {
            address: self.address.clone(),
            command,
            source,
        }
    }

    /// Sets every pair at once: Redis 7 applies a multi-parameter `CONFIG SET` all or
    /// nothing, so a refused value leaves the running configuration as it was.
    pub async fn config_set(&mut self, settings: &[(String, String)]) -> Result<(), CacheError> {
        if settings.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("SET");
        for (name, value) in settings {
            cmd.arg(name).arg(value);
        }
        match cmd.query_async::<()>(&mut self.connection).await {
            Ok(()) => Ok(()),
            Err(e)
                if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) =>
            {
                let message = e.detail().unwrap_or_default().to_owned();
                // Redis names the argument it refused: "… (possibly related to argument
                // 'maxmemory-policy') - …".
                let setting = settings
                    .iter()
                    .map(|(name, _)| name)
                    .find(|name| message.contains(&format!("'{name}'")))
                    .cloned()
                    .unwrap_or_else(|| {
                        settings
                            .iter()
                            .map(|(n, _)| n.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    });
                Err(CacheError::Refused { setting, message })
            }
            Err(e) => Err(self.failed("CONFIG SET")(e)),
        }
    }

    /// The running value of one setting.
    pub async fn config_get(&mut self, name: &str) -> Result<Option<String>, CacheError> {
        let pairs: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg(name)
            .query_async(&mut self.connection)
            .await
            .map_err(self.failed("CONFIG GET"))?;
        Ok(pairs.into_iter().nth(1))
    }

    pub async fn info(&mut self) -> Result<Info, CacheError> {
        let reply: String = redis::cmd("INFO")
            .query_async(&mut self.connection)
            .await
            .map_err(self.failed("INFO"))?;
        Ok(Info::parse(&reply))
    }

    pub(crate) fn connection(&mut self) -> &mut MultiplexedConnection {
        &mut self.connection
    }
}
