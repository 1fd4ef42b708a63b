//! Cooldowns and ejections pushed across processes, as they happen.
//!
//! Polling the store every [`poll_interval`](super::SharingSettings::poll_interval) (500 ms
//! by default) is the catch-up path; this is the fast one. A process that puts a
//! deployment out (a cooldown, or an outlier ejection) publishes an [`OutageEvent`] on the
//! store's push channel (Redis pub/sub on `{prefix}:events`); every process subscribed
//! applies it to its own atomics at once, through the same hooks as a polled one. Only the
//! deployment id, the kind, the end (wall-clock ms) and the class name of the answer cross;
//! never a reason text, a key or a URL.
//!
//! * **Own events** come back on the sender's own subscription and are skipped by process
//!   id; an applied event is never announced again, so nothing echoes.
//! * **Lost connection**: the subscription ends; it is remade with a backoff from
//!   [`BACKOFF_MIN`] doubling to [`BACKOFF_MAX`], logged once per outage (warn when lost,
//!   info when back). Whatever was pushed meanwhile is read by the next poll (the store
//!   keeps every cooldown and ejection with its end), and one poll runs as soon as the
//!   subscription is back.
//! * **Requests never wait on it**: the request path only `try_send`s an announcement to
//!   the coordinator's task (see `CooldownSink`); the subscription lives in that task.

use std::{pin::Pin, sync::Arc, time::Duration};

use futures_util::{Stream, StreamExt as _};
use serde::{Deserialize, Serialize};
use tokio::{sync::mpsc, time::Instant};

use super::store::{HealthStore, StoreError};

/// The first delay before subscribing again after the push channel was lost.
pub const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// The longest delay between two attempts to subscribe again.
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The stream [`HealthStore::subscribe`] returns.
pub type EventStream = Pin<Box<dyn Stream<Item = OutageEvent> + Send>>;

/// How a deployment went out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OutageKind {
    /// A cooldown (LiteLLM's rule, from failed requests).
    Cooldown,
    /// An outlier ejection (`router_settings.outlier_detection`).
    Ejection,
}

/// A cooldown or an ejection entered in one process, pushed to the others.
///
/// Its JSON form is what crosses the store: `{"kind":"cooldown","id":"d1",
/// "until_ms":1767225600000,"class":"rate_limited","from":"9f2c…"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OutageEvent {
    /// Cooldown or ejection.
    pub kind: OutageKind,
    /// The deployment's `model_info.id`.
    pub id: String,
    /// When it ends, in milliseconds since the Unix epoch (store clock).
    pub until_ms: u64,
    /// The class of the answer that put it out (`rate_limited`, `server_error`, ...): a
    /// fixed name, never a message.
    pub class: String,
    /// The process id of the sender ([`SharedStatus::process_id`](super::SharedStatus::process_id)).
    pub from: String,
}

impl OutageEvent {
    /// An event (for [`HealthStore`] implementations and tests).
    pub fn new(
        kind: OutageKind,
        id: impl Into<String>,
        until_ms: u64,
        class: impl Into<String>,
        from: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            id: id.into(),
            until_ms,
            class: class.into(),
            from: from.into(),
        }
    }

    /// The event as it crosses the store.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// An event read from the store; `None` for anything else (another version, a stray
    /// message), which receivers ignore.
    pub fn from_json(text: &[u8]) -> Option<Self> {
        let mut e: Self = serde_json::from_slice(text).ok()?;
        // From outside: keep the class a short plain name, as it is logged.
        e.class.retain(|c| c.is_ascii_alphanumeric() || c == '_');
        e.class.truncate(32);
        Some(e)
    }
}

/// What the subscription hands to the coordinator's task.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// An event some process pushed (perhaps this one: the receiver filters).
    Event(OutageEvent),
    /// Subscribed (again): poll now for what was missed.
    Resubscribed,
}

/// Keeps a subscription to `store`'s push channel and forwards what arrives to `tx`,
/// until `tx` is closed (never, for a store without a push channel: it returns at once,
/// leaving polling alone). Each attempt is bounded by `timeout`.
pub(crate) async fn listen(
    store: Arc<dyn HealthStore>,
    timeout: Duration,
    tx: mpsc::Sender<Incoming>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut down_since: Option<Instant> = None;
    loop {
        let attempt = tokio::time::timeout(timeout, store.subscribe())
            .await
            .unwrap_or_else(|_| Err(StoreError::timeout(timeout)));
        let mut stream = match attempt {
            Ok(Some(s)) => s,
            Ok(None) => {
                tracing::debug!(
                    backend = store.backend(),
                    "health_check_shared_push_unsupported: cooldowns are shared by polling"
                );
                return;
            }
            Err(e) => {
                if down_since.is_none() {
                    down_since = Some(Instant::now());
                    tracing::warn!(
                        backend = store.backend(),
                        error = %e,
                        "health_check_shared_push_lost: retrying with backoff; cooldowns still arrive by polling"
                    );
                } else {
                    tracing::debug!(error = %e, backoff_ms = backoff.as_millis() as u64, "health_check_shared_push_retry");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                if tx.is_closed() {
                    return;
                }
                continue;
            }
        };
        backoff = BACKOFF_MIN;
        if let Some(since) = down_since.take() {
            tracing::info!(
                backend = store.backend(),
                down_ms = since.elapsed().as_millis() as u64,
                "health_check_shared_push_resumed"
            );
        }
        // Whatever was pushed before this subscription (or while it was down) is read now.
        if tx.send(Incoming::Resubscribed).await.is_err() {
            return;
        }
        tracing::debug!(
            backend = store.backend(),
            "health_check_shared_push_subscribed"
        );
        loop {
            tokio::select! {
                ev = stream.next() => match ev {
                    Some(ev) => if tx.send(Incoming::Event(ev)).await.is_err() { return },
                    None => break,
                },
                () = tx.closed() => return,
            }
        }
        down_since = Some(Instant::now());
        tracing::warn!(
            backend = store.backend(),
            "health_check_shared_push_lost: the connection closed; retrying with backoff; cooldowns still arrive by polling"
        );
        tokio::time::sleep(backoff).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_stray_messages_are_ignored() {
        let e = OutageEvent::new(OutageKind::Ejection, "d1", 42, "server_error", "p1");
        assert_eq!(
            e.to_json(),
            r#"{"kind":"ejection","id":"d1","until_ms":42,"class":"server_error","from":"p1"}"#
        );
        assert_eq!(OutageEvent::from_json(e.to_json().as_bytes()), Some(e));
        assert_eq!(OutageEvent::from_json(b"hello"), None);
        let odd = br#"{"kind":"cooldown","id":"d","until_ms":1,"class":"a b\nc","from":"p"}"#;
        assert_eq!(OutageEvent::from_json(odd).unwrap().class, "abc");
    }
}
