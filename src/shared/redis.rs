//! [`RedisStore`]: the [`HealthStore`] across processes (documented on the type).

use std::{fmt, sync::Arc, time::Duration};

use redis::{
    AsyncCommands, Client, IntoConnectionInfo, Script,
    aio::{ConnectionManager, ConnectionManagerConfig},
};
use tokio::{sync::OnceCell, time::Instant};

use futures_util::StreamExt as _;

use super::{
    push::{EventStream, OutageEvent},
    store::{HealthStore, Observation, SharedRound, StoreError, StoreFuture, millis, unix_ms},
    usage::UsageCount,
};
use crate::{
    config::RedisSettings,
    error::ConfigError,
    secret::{Scrubber, Secret},
};

/// The default key prefix.
pub const DEFAULT_KEY_PREFIX: &str = "tower-health-routing";

/// How often a subscription pings Redis, so a connection that went silent (a partition
/// rather than a close) is noticed and remade.
const KEEPALIVE: Duration = Duration::from_secs(5);

/// How long a minute's usage counts are kept (the minute, and one more to read it late).
const USAGE_TTL_SECS: i64 = 120;

/// The default bound of a connection attempt and of one reply, inside the manager (the
/// probe loop bounds each call on its own as well).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

const ACQUIRE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local written = tonumber(redis.call('GET', KEYS[3]) or '0')
if written ~= tonumber(ARGV[3]) then return -2 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local t = redis.call('INCR', KEYS[2])
if t <= written then
  t = written + 1
  redis.call('SET', KEYS[2], t)
end
return t
";

const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

const PUBLISH: &str = r"
local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[1]) <= cur then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('SET', KEYS[2], ARGV[1])
return 1
";

const ENTER_COOLDOWN: &str = r"
local until_ms = tonumber(ARGV[2])
local cur = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '0')
if until_ms > cur then redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local want = until_ms - tonumber(ARGV[3])
if want > 0 and redis.call('PTTL', KEYS[1]) < want then
  redis.call('PEXPIRE', KEYS[1], want)
end
return 1
";

struct Keys {
    lease: String,
    fence: String,
    results: String,
    results_token: String,
    cooldowns: String,
    ejections: String,
    events: String,
    usage: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        let k = |name: &str| format!("{{{prefix}}}:{name}");
        Self {
            lease: k("lease"),
            fence: k("fence"),
            results: k("results"),
            results_token: k("results_token"),
            cooldowns: k("cooldowns"),
            ejections: k("ejections"),
            events: k("events"),
            usage: k("usage"),
        }
    }
}

struct Scripts {
    acquire: Script,
    renew: Script,
    release: Script,
    publish: Script,
    enter_cooldown: Script,
}

/// The [`HealthStore`] across processes, on the `redis` crate's tokio
/// connection manager (one multiplexed connection, reconnected in the background).
///
/// # Keys
///
/// All under one prefix (default `tower-health-routing`), written `{prefix}` so a Redis
/// Cluster proxy keeps them in one slot, as the Lua scripts need:
///
/// | key | type | holds |
/// |---|---|---|
/// | `{prefix}:lease` | string, `PX` lease TTL | the process id holding the probing lease |
/// | `{prefix}:fence` | counter | the last fencing token handed out (`INCR`) |
/// | `{prefix}:results` | string, `PX` staleness threshold | the latest [`SharedRound`] as JSON |
/// | `{prefix}:results_token` | string | the token of the latest round kept (outlives it) |
/// | `{prefix}:cooldowns` | sorted set | deployment id → cooldown end (Unix ms) |
/// | `{prefix}:ejections` | sorted set | deployment id → outlier ejection end (Unix ms) |
/// | `{prefix}:usage:{minute}` | hash, 120 s expiry | `{id}:requests`, `{id}:tokens` → the minute's counts (`usage-based-routing-v2`; minute = Unix ms / 60000) |
/// | `{prefix}:events` | pub/sub channel | [`OutageEvent`]s as JSON: cooldowns and ejections pushed as they happen |
///
/// Acquire (`SET NX PX` + `INCR`, only if the latest round is the one the caller saw),
/// renew and release (compare-and-`PEXPIRE` / compare-and-`DEL` on the holder), publish
/// (keep only a newer token) and cooldowns (keep the later end) are Lua scripts, so each
/// is atomic. Reads are one `MULTI` round trip.
///
/// # Secrets
///
/// The password (in `redis_url` or `redis_password`) goes to Redis's `AUTH` only. Errors
/// are scrubbed of it and of the URL before they are shown, and [`Debug`](std::fmt::Debug)
/// shows only the host and port. Needs Redis 2.6.12 or later (Lua, `SET ... PX`). TLS:
/// a `rediss://` URL, or `tls: true` in [`RedisSettings::HostPort`] (rustls, the system's
/// root certificates).
///
/// Creating one does not connect: the connection is made on first use and remade in the
/// background after a failure, so a Redis that is down at start-up is a degraded mode of
/// the probe loop, not an error.
///
/// ```no_run
/// use std::sync::Arc;
/// use tower_health_routing::{Config, HealthState, ProbeLoop, config::RedisSettings, secret::Secret, shared::RedisStore};
///
/// # async fn run(cfg: Config) -> Result<(), tower_health_routing::ConfigError> {
/// let state = HealthState::new(cfg);
/// let redis = RedisSettings::Url(Secret::new("redis://127.0.0.1:6379"));
/// let store = RedisStore::builder(&redis).key_prefix("my-gateways").build()?;
/// let probes = ProbeLoop::builder(&state).store(Arc::new(store)).build()?.spawn();
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    conn: OnceCell<ConnectionManager>,
    timeout: Duration,
    keys: Keys,
    scripts: Scripts,
    scrubber: Scrubber,
    /// `host:port` (or the socket path), for Debug and logs.
    target: String,
}

/// Builds a [`RedisStore`]; see [`RedisStore::builder`].
#[derive(Debug)]
pub struct RedisStoreBuilder {
    settings: RedisSettings,
    prefix: String,
    timeout: Duration,
}

impl RedisStoreBuilder {
    /// The key prefix (default [`DEFAULT_KEY_PREFIX`]): processes share state only with those
    /// using the same prefix on the same Redis.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The bound of a connection attempt and of one reply (default 1 s).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// The store. Errors name the field at fault (`router_settings.redis_url`, ...) and
    /// never quote the URL or password.
    pub fn build(self) -> Result<RedisStore, ConfigError> {
        let (field, secrets) = match &self.settings {
            RedisSettings::Url(u) => ("router_settings.redis_url", vec![u.clone()]),
            RedisSettings::HostPort { password, .. } => (
                "router_settings.redis_host",
                password.iter().cloned().collect(),
            ),
        };
        let url_scrubber = Scrubber::new(secrets.clone());
        let bad = |why: String| ConfigError::invalid(field, url_scrubber.scrub(&why).into_owned());
        if self.prefix.is_empty() || self.prefix.contains(['{', '}']) {
            return Err(ConfigError::invalid(
                "redis.key_prefix",
                "must be non-empty, without braces",
            ));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::invalid(
                "redis.timeout",
                "must be greater than zero",
            ));
        }
        let info = match &self.settings {
            RedisSettings::Url(u) => {
                let url = u.expose().trim();
                // The parser's message is left out: it could quote the URL.
                url.into_connection_info().map_err(|_| {
                    bad("not a usable Redis URL: expected redis://[[user]:password@]host[:port][/db], \
                         rediss://… (TLS) or redis+unix:///path"
                        .to_owned())
                })?
            }
            RedisSettings::HostPort {
                host,
                port,
                password,
                tls,
            } => {
                let info = if *tls {
                    // `rediss://host:port`: TLS with the system's roots, SNI = host.
                    redis::ConnectionAddr::TcpTls {
                        host: host.clone(),
                        port: *port,
                        insecure: false,
                        tls_params: None,
                    }
                    .into_connection_info()
                } else {
                    (host.as_str(), *port).into_connection_info()
                }
                .map_err(|e| bad(format!("not a usable Redis address ({e})")))?;
                match password {
                    Some(p) => {
                        let redis = info.redis_settings().clone().set_password(p.expose());
                        info.set_redis_settings(redis)
                    }
                    None => info,
                }
            }
        };
        let target = info.addr().to_string();
        // The password alone too (a URL's password would otherwise show through errors).
        let scrubber = Scrubber::new(
            secrets
                .into_iter()
                .chain(info.redis_settings().password().map(Secret::from)),
        );
        let client = Client::open(info).map_err(|e| bad(format!("{e}")))?;
        Ok(RedisStore {
            inner: Arc::new(Inner {
                client,
                conn: OnceCell::new(),
                timeout: self.timeout,
                keys: Keys::new(&self.prefix),
                scripts: Scripts {
                    acquire: Script::new(ACQUIRE),
                    renew: Script::new(RENEW),
                    release: Script::new(RELEASE),
                    publish: Script::new(PUBLISH),
                    enter_cooldown: Script::new(ENTER_COOLDOWN),
                },
                scrubber,
                target,
            }),
        })
    }
}

impl RedisStore {
    /// A store for `settings` with the default prefix and timeout; see [`builder`](Self::builder).
    pub fn new(settings: &RedisSettings) -> Result<Self, ConfigError> {
        Self::builder(settings).build()
    }

    /// Starts a store for `settings`: key prefix [`DEFAULT_KEY_PREFIX`], 1 s connection and
    /// reply timeout.
    pub fn builder(settings: &RedisSettings) -> RedisStoreBuilder {
        RedisStoreBuilder {
            settings: settings.clone(),
            prefix: DEFAULT_KEY_PREFIX.to_owned(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// `PING`s Redis (bounded by the store's timeout) and returns the round trip; the
    /// error is short and secret-free. For `/health/services?service=redis`.
    pub async fn ping(&self) -> Result<Duration, String> {
        HealthStore::ping(self).await.map_err(|e| e.to_string())
    }

    async fn conn(&self) -> Result<ConnectionManager, StoreError> {
        let i = &self.inner;
        let m = i
            .conn
            .get_or_try_init(|| async {
                let cfg = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(i.timeout))
                    .set_response_timeout(Some(i.timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(i.timeout);
                ConnectionManager::new_lazy_with_config(i.client.clone(), cfg)
            })
            .await
            .map_err(|e| self.err(&e))?;
        Ok(m.clone())
    }

    fn err(&self, e: &redis::RedisError) -> StoreError {
        let text = e.to_string();
        let text: String = self.inner.scrubber.scrub(&text).chars().take(200).collect();
        StoreError::new(format!("redis at {}: {text}", self.inner.target))
    }

    /// Runs `f` on a connection, bounded by the store's timeout.
    /// The entries of an outage set (`Keys::cooldowns` or `Keys::ejections`) that have not
    /// ended: each deployment id with its end (Unix ms).
    fn live_outages(&self, set: fn(&Keys) -> &str) -> StoreFuture<'_, Vec<(String, u64)>> {
        let now = unix_ms(self.now());
        self.with(move |mut c, i| async move {
            let list: Vec<(String, f64)> = c
                .zrangebyscore_withscores(set(&i.keys), now, "+inf")
                .await?;
            Ok(list
                .into_iter()
                .map(|(id, until)| (id, until.max(0.0) as u64))
                .collect())
        })
    }

    /// Puts `id` into an outage set until `until_ms`, keeping the later end if it is there
    /// already (one script for cooldowns and ejections alike).
    fn enter_outage<'a>(
        &'a self,
        set: fn(&Keys) -> &str,
        id: &'a str,
        until_ms: u64,
    ) -> StoreFuture<'a, ()> {
        let now = unix_ms(self.now());
        self.with(move |mut c, i| async move {
            let _: i64 = i
                .scripts
                .enter_cooldown
                .key(set(&i.keys))
                .arg(id)
                .arg(until_ms)
                .arg(now)
                .invoke_async(&mut c)
                .await?;
            Ok(())
        })
    }

    fn with<'a, T: Send + 'a, F>(
        &'a self,
        f: impl FnOnce(ConnectionManager, &'a Inner) -> F + Send + 'a,
    ) -> StoreFuture<'a, T>
    where
        F: std::future::Future<Output = redis::RedisResult<T>> + Send + 'a,
    {
        Box::pin(async move {
            let conn = self.conn().await?;
            match tokio::time::timeout(self.inner.timeout, f(conn, &self.inner)).await {
                Ok(r) => r.map_err(|e| self.err(&e)),
                Err(_) => Err(StoreError::timeout(self.inner.timeout)),
            }
        })
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("target", &self.inner.target)
            .field("prefix_key", &self.inner.keys.lease)
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

impl HealthStore for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    fn observe(&self) -> StoreFuture<'_, Observation> {
        self.with(|mut c, i| async move {
            let (round, token, holder): (Option<String>, Option<u64>, Option<String>) =
                redis::pipe()
                    .atomic()
                    .get(&i.keys.results)
                    .get(&i.keys.results_token)
                    .get(&i.keys.lease)
                    .query_async(&mut c)
                    .await?;
            // A round that does not parse (another version, a stray write) counts as none.
            let round = round.and_then(|r| serde_json::from_str::<SharedRound>(&r).ok());
            Ok(Observation::new(round, token.unwrap_or(0), holder))
        })
    }

    fn acquire<'a>(
        &'a self,
        holder: &'a str,
        ttl: Duration,
        seen: u64,
    ) -> StoreFuture<'a, Option<u64>> {
        self.with(move |mut c, i| async move {
            let t: i64 = i
                .scripts
                .acquire
                .key(&i.keys.lease)
                .key(&i.keys.fence)
                .key(&i.keys.results_token)
                .arg(holder)
                .arg(millis(ttl).max(1))
                .arg(seen)
                .invoke_async(&mut c)
                .await?;
            Ok(u64::try_from(t).ok().filter(|t| *t > 0))
        })
    }

    fn renew<'a>(&'a self, holder: &'a str, ttl: Duration) -> StoreFuture<'a, bool> {
        self.with(move |mut c, i| async move {
            let n: i64 = i
                .scripts
                .renew
                .key(&i.keys.lease)
                .arg(holder)
                .arg(millis(ttl).max(1))
                .invoke_async(&mut c)
                .await?;
            Ok(n == 1)
        })
    }

    fn release<'a>(&'a self, holder: &'a str) -> StoreFuture<'a, bool> {
        self.with(move |mut c, i| async move {
            let n: i64 = i
                .scripts
                .release
                .key(&i.keys.lease)
                .arg(holder)
                .invoke_async(&mut c)
                .await?;
            Ok(n == 1)
        })
    }

    fn publish<'a>(&'a self, round: &'a SharedRound, keep_for: Duration) -> StoreFuture<'a, bool> {
        self.with(move |mut c, i| async move {
            let json = serde_json::to_string(round).map_err(|e| {
                redis::RedisError::from((
                    redis::ErrorKind::Client,
                    "cannot encode the round",
                    e.to_string(),
                ))
            })?;
            let n: i64 = i
                .scripts
                .publish
                .key(&i.keys.results)
                .key(&i.keys.results_token)
                .arg(round.token)
                .arg(json)
                .arg(millis(keep_for).max(1))
                .invoke_async(&mut c)
                .await?;
            Ok(n == 1)
        })
    }

    fn cooldowns(&self) -> StoreFuture<'_, Vec<(String, u64)>> {
        self.live_outages(|k| &k.cooldowns)
    }

    fn enter_cooldown<'a>(&'a self, id: &'a str, until_ms: u64) -> StoreFuture<'a, ()> {
        self.enter_outage(|k| &k.cooldowns, id, until_ms)
    }

    fn ping(&self) -> StoreFuture<'_, Duration> {
        self.with(|mut c, _| async move {
            let started = Instant::now();
            let _: String = redis::cmd("PING").query_async(&mut c).await?;
            Ok(started.elapsed())
        })
    }

    fn ejections(&self) -> StoreFuture<'_, Vec<(String, u64)>> {
        self.live_outages(|k| &k.ejections)
    }

    fn enter_ejection<'a>(&'a self, id: &'a str, until_ms: u64) -> StoreFuture<'a, ()> {
        self.enter_outage(|k| &k.ejections, id, until_ms)
    }

    fn push<'a>(&'a self, event: &'a OutageEvent) -> StoreFuture<'a, ()> {
        self.with(move |mut c, i| async move {
            let _: i64 = c.publish(&i.keys.events, event.to_json()).await?;
            Ok(())
        })
    }

    fn subscribe(&self) -> StoreFuture<'_, Option<EventStream>> {
        Box::pin(async move {
            let i = &self.inner;
            let connect = async {
                let mut ps = i.client.get_async_pubsub().await?;
                ps.subscribe(&i.keys.events).await?;
                Ok::<_, redis::RedisError>(ps)
            };
            let ps = match tokio::time::timeout(i.timeout, connect).await {
                Ok(r) => r.map_err(|e| self.err(&e))?,
                Err(_) => return Err(StoreError::timeout(i.timeout)),
            };
            let (sink, stream) = ps.split();
            let timeout = i.timeout;
            let mut tick = tokio::time::interval_at(Instant::now() + KEEPALIVE, KEEPALIVE);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let events = futures_util::stream::unfold(
                (sink, stream, tick),
                move |(mut sink, mut stream, mut tick)| async move {
                    loop {
                        tokio::select! {
                            msg = stream.next() => {
                                let msg = msg?;
                                if let Some(e) = OutageEvent::from_json(msg.get_payload_bytes()) {
                                    return Some((e, (sink, stream, tick)));
                                }
                            }
                            _ = tick.tick() => {
                                let pong = tokio::time::timeout(timeout, sink.ping::<redis::Value>()).await;
                                if !matches!(pong, Ok(Ok(_))) {
                                    return None;
                                }
                            }
                        }
                    }
                },
            );
            Ok(Some(events.boxed()))
        })
    }

    fn exchange_usage<'a>(
        &'a self,
        minute: u64,
        deltas: &'a [UsageCount],
    ) -> StoreFuture<'a, Option<Vec<UsageCount>>> {
        self.with(move |mut c, i| async move {
            if deltas.is_empty() {
                return Ok(Some(Vec::new()));
            }
            let key = format!("{}:{minute}", i.keys.usage);
            let fields: Vec<[String; 2]> = deltas
                .iter()
                .map(|d| [format!("{}:requests", d.id), format!("{}:tokens", d.id)])
                .collect();
            let mut pipe = redis::pipe();
            let mut wrote = false;
            for (d, [r, t]) in deltas.iter().zip(&fields) {
                if d.requests > 0 {
                    pipe.hincr(&key, r, d.requests).ignore();
                    wrote = true;
                }
                if d.tokens > 0 {
                    pipe.hincr(&key, t, d.tokens).ignore();
                    wrote = true;
                }
            }
            if wrote {
                pipe.expire(&key, USAGE_TTL_SECS).ignore();
            }
            pipe.cmd("HMGET").arg(&key);
            for [r, t] in &fields {
                pipe.arg(r).arg(t);
            }
            let (counts,): (Vec<Option<u64>>,) = pipe.query_async(&mut c).await?;
            Ok(Some(
                deltas
                    .iter()
                    .zip(counts.chunks(2))
                    .map(|(d, rt)| {
                        let get = |k: usize| rt.get(k).copied().flatten().unwrap_or(0);
                        UsageCount::new(d.id.clone(), get(0), get(1))
                    })
                    .collect(),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use redis::ConnectionAddr;

    use super::*;

    fn addr(settings: &RedisSettings) -> ConnectionAddr {
        let store = RedisStore::new(settings).expect("builds");
        store.inner.client.get_connection_info().addr().clone()
    }

    #[test]
    fn tls_settings_give_a_tls_connection() {
        let tls = RedisSettings::HostPort {
            host: "cache.example".into(),
            port: 6380,
            password: Some(Secret::new("pw")),
            tls: true,
        };
        assert!(
            matches!(addr(&tls), ConnectionAddr::TcpTls { host, port: 6380, insecure: false, .. } if host == "cache.example")
        );
        let plain = RedisSettings::HostPort {
            host: "cache.example".into(),
            port: 6379,
            password: None,
            tls: false,
        };
        assert!(matches!(addr(&plain), ConnectionAddr::Tcp(_, 6379)));
        let url = RedisSettings::Url(Secret::new("rediss://:pw@cache.example:6390/0"));
        assert!(matches!(
            addr(&url),
            ConnectionAddr::TcpTls {
                port: 6390,
                insecure: false,
                ..
            }
        ));
        let url = RedisSettings::Url(Secret::new("redis://cache.example"));
        assert!(matches!(addr(&url), ConnectionAddr::Tcp(..)));
    }
}
