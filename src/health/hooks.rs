//! Hooks: state that other modules hang off a [`HealthState`](super::HealthState)
//! without the health module knowing them (the sharing status of `shared`, the cooldown
//! sink of `cooldown`, ...). One value per type, created on first use by its owner.
//!
//! Reads are one `ArcSwap` load and a map lookup: no lock, no wait. Writes (rare: when an
//! owner first installs its value) copy the small map.

use std::{
    any::{Any, TypeId},
    collections::HashMap,
    fmt,
    sync::Arc,
};

use arc_swap::ArcSwap;
use foldhash::fast::RandomState;

type Map = HashMap<TypeId, Arc<dyn Any + Send + Sync>, RandomState>;

/// A typed registry of values owned by other modules; see the [module docs](self).
#[derive(Default)]
pub(crate) struct Hooks {
    map: ArcSwap<Map>,
}

impl Hooks {
    /// The value of type `T`, if its owner installed one.
    pub(crate) fn get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let v = self.map.load().get(&TypeId::of::<T>()).cloned()?;
        v.downcast::<T>().ok()
    }

    /// The value of type `T`, installed with `init` if there is none yet.
    pub(crate) fn get_or_init<T: Any + Send + Sync>(&self, init: impl Fn() -> T) -> Arc<T> {
        if let Some(v) = self.get::<T>() {
            return v;
        }
        let fresh = Arc::new(init());
        let prev = self.map.rcu(|cur| {
            let mut next = Map::clone(cur);
            next.entry(TypeId::of::<T>())
                .or_insert_with(|| Arc::clone(&fresh) as Arc<dyn Any + Send + Sync>);
            next
        });
        // Another writer may have installed one first: theirs stays.
        prev.get(&TypeId::of::<T>())
            .and_then(|v| Arc::clone(v).downcast::<T>().ok())
            .unwrap_or(fresh)
    }
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("installed", &self.map.load().len())
            .finish()
    }
}
