//! What every [`HealthStore`] must do, as functions each backend's tests call (as
//! tower-sessions runs one suite against every store). Lease expiry waits on tokio's clock:
//! instant under paused time (memory), real for Redis.

use std::time::Duration;

use tower_health_routing::shared::{HealthStore, SharedRound};

const TTL: Duration = Duration::from_millis(300);

fn round(token: u64, by: &str, store: &dyn HealthStore) -> SharedRound {
    let now = store
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    serde_json::from_value(serde_json::json!({
        "token": token,
        "checked_by": by,
        "started_at_ms": now,
        "written_at_ms": now,
        "results": [{"id": "d0", "healthy": false, "status": 503, "reason": "status 503",
                     "checked_at_ms": now, "latency_ms": 3}],
    }))
    .expect("a round")
}

async fn holder(store: &dyn HealthStore) -> Option<String> {
    store.observe().await.expect("observe").lease_holder
}

/// One holder at a time; renew and release only by the holder; expiry frees it.
pub async fn lease_is_exclusive_and_only_its_holder_renews_or_releases(store: &dyn HealthStore) {
    let empty = store.observe().await.expect("observe");
    assert_eq!(
        (empty.round, empty.written_token, empty.lease_holder),
        (None, 0, None)
    );
    let t1 = store
        .acquire("a", TTL, 0)
        .await
        .unwrap()
        .expect("a free lease");
    assert!(t1 > 0);
    assert_eq!(store.acquire("b", TTL, 0).await.unwrap(), None, "held by a");
    assert_eq!(holder(store).await.as_deref(), Some("a"));
    assert!(!store.renew("b", TTL).await.unwrap(), "b does not hold it");
    assert!(
        !store.release("b").await.unwrap(),
        "b cannot release a's lease"
    );
    assert_eq!(holder(store).await.as_deref(), Some("a"));
    assert!(store.renew("a", TTL).await.unwrap());
    assert!(store.release("a").await.unwrap());
    assert_eq!(holder(store).await, None);
    assert!(!store.release("a").await.unwrap(), "released once");
    // Expiry: a holder that never releases is replaced after the TTL.
    let t2 = store
        .acquire("a", TTL, 0)
        .await
        .unwrap()
        .expect("free again");
    assert!(t2 > t1, "tokens only grow: {t1} then {t2}");
    tokio::time::sleep(TTL + Duration::from_millis(100)).await;
    assert_eq!(holder(store).await, None, "expired");
    assert!(
        !store.renew("a", TTL).await.unwrap(),
        "an expired lease is not renewed"
    );
    let t3 = store
        .acquire("b", TTL, 0)
        .await
        .unwrap()
        .expect("taken over");
    assert!(t3 > t2);
}

/// A writer whose lease expired and was taken over cannot overwrite the newer round.
pub async fn a_stale_lease_writer_cannot_overwrite_newer_results(store: &dyn HealthStore) {
    let old = store.acquire("slow", TTL, 0).await.unwrap().expect("lease");
    tokio::time::sleep(TTL + Duration::from_millis(100)).await;
    let new = store
        .acquire("fresh", TTL, 0)
        .await
        .unwrap()
        .expect("the slow holder's lease expired");
    assert!(new > old);
    assert!(
        store
            .publish(&round(new, "fresh", store), TTL * 10)
            .await
            .unwrap()
    );
    assert!(store.release("fresh").await.unwrap());
    assert!(
        !store
            .publish(&round(old, "slow", store), TTL * 10)
            .await
            .unwrap(),
        "the stale writer's round is refused"
    );
    assert!(
        !store
            .publish(&round(new, "fresh", store), TTL * 10)
            .await
            .unwrap(),
        "the same token twice is refused too"
    );
    let seen = store.observe().await.unwrap();
    let kept = seen.round.expect("a round");
    assert_eq!((kept.token, kept.checked_by.as_str()), (new, "fresh"));
    assert_eq!(seen.written_token, new);
    assert_eq!(kept.results[0].status, Some(503));
}

/// A process that missed the latest round cannot take the lease to probe it again.
pub async fn acquire_needs_the_latest_round(store: &dyn HealthStore) {
    let t = store.acquire("a", TTL, 0).await.unwrap().expect("lease");
    // Kept for one TTL only: the round goes, its token stays.
    assert!(store.publish(&round(t, "a", store), TTL).await.unwrap());
    assert!(store.release("a").await.unwrap());
    assert_eq!(
        store.acquire("b", TTL, 0).await.unwrap(),
        None,
        "b saw no round, but round {t} was written"
    );
    tokio::time::sleep(TTL + Duration::from_millis(100)).await;
    let seen = store.observe().await.unwrap();
    assert_eq!(
        (seen.round, seen.written_token),
        (None, t),
        "expired round, kept token"
    );
    assert_eq!(store.acquire("b", TTL, 0).await.unwrap(), None);
    let next = store
        .acquire("b", TTL, t)
        .await
        .unwrap()
        .expect("b saw round t");
    assert!(next > t);
}

/// Cooldowns keep the later end; ended ones are not listed.
pub async fn cooldowns_keep_the_later_end(store: &dyn HealthStore) {
    let now = store
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    store.enter_cooldown("d1", now + 10_000).await.unwrap();
    store.enter_cooldown("d1", now + 5_000).await.unwrap();
    store
        .enter_cooldown("d2", now.saturating_sub(1_000))
        .await
        .unwrap();
    let mut list = store.cooldowns().await.unwrap();
    list.sort();
    assert_eq!(list, vec![("d1".to_owned(), now + 10_000)]);
    assert!(store.ping().await.is_ok());
}
