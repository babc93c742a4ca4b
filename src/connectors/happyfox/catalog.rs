//! HappyFox's reference lists (categories, custom-field definitions, statuses, priorities, staff),
//! cached per account for a while: they change rarely, every write schema is built from them, and
//! HappyFox asks clients to cache them rather than spend the rate budget (reference §6: ~15 min).

use super::model::{Category, FieldDef, Priority, Staff, Status};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a fetched list is used before it is fetched again.
pub const TTL: Duration = Duration::from_secs(15 * 60);

/// One list per account, with when it was fetched.
pub struct TtlCache<T> {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Arc<T>)>>,
}

impl<T> TtlCache<T> {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The account's list if it was fetched less than the TTL before `now`.
    pub fn fresh(&self, account: &str, now: Instant) -> Option<Arc<T>> {
        let entries = self.entries.lock().expect("cache lock");
        let (at, value) = entries.get(account)?;
        (now.saturating_duration_since(*at) < self.ttl).then(|| value.clone())
    }

    /// The account's list whatever its age (for naming fields in error messages).
    pub fn any(&self, account: &str) -> Option<Arc<T>> {
        let entries = self.entries.lock().expect("cache lock");
        entries.get(account).map(|(_, v)| v.clone())
    }

    pub fn put(&self, account: &str, value: T, now: Instant) -> Arc<T> {
        let value = Arc::new(value);
        self.entries
            .lock()
            .expect("cache lock")
            .insert(account.to_string(), (now, value.clone()));
        value
    }
}

/// Every cached list. Concurrent misses may both fetch; jobs of one account never run at once, so
/// that is rare and harmless.
pub struct Catalog {
    pub categories: TtlCache<Vec<Category>>,
    pub fields: TtlCache<Vec<FieldDef>>,
    pub statuses: TtlCache<Vec<Status>>,
    pub priorities: TtlCache<Vec<Priority>>,
    pub staff: TtlCache<Vec<Staff>>,
}

impl Catalog {
    pub fn new(ttl: Duration) -> Self {
        Self {
            categories: TtlCache::new(ttl),
            fields: TtlCache::new(ttl),
            statuses: TtlCache::new(ttl),
            priorities: TtlCache::new(ttl),
            staff: TtlCache::new(ttl),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_per_account() {
        let cache = TtlCache::new(Duration::from_secs(900));
        let t0 = Instant::now();
        cache.put("acme", vec![1], t0);
        assert_eq!(
            *cache.fresh("acme", t0 + Duration::from_secs(899)).unwrap(),
            vec![1]
        );
        assert!(cache.fresh("acme", t0 + Duration::from_secs(900)).is_none());
        assert!(
            cache.fresh("globex", t0).is_none(),
            "accounts do not share lists"
        );
        assert!(
            cache.any("acme").is_some(),
            "an expired list still names fields"
        );
    }
}
