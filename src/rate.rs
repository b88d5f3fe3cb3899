//! The request rate limit (API.md §8): at most `limit` requests per tenant
//! per UTC wall-clock minute (fixed window), all routes, counted across
//! every shard. With authentication off every caller is tenant `public`.
//!
//! Each shard counts the requests it admitted per tenant in the current
//! minute and tells the other shards its count after every admission
//! (`router::Msg::Rate`); a shard admits a request while its own count plus
//! the latest counts the others reported for the same minute is below the
//! limit. Requests admitted at the same moment on two shards can pass the
//! limit by what is in flight between them; nothing is ever refused below it.
//! A tenant's window idle for `retention` minutes is dropped.

use aionbd_shards::placement::ShardId;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;

/// One tenant's window, as one shard sees it.
#[derive(Default)]
struct Window {
    /// The minute (seconds since the epoch / 60) `own` counts.
    minute: u64,
    own: u64,
    /// Per other shard: (minute, count) it last reported.
    peers: HashMap<ShardId, (u64, u64)>,
}

#[derive(Default)]
pub struct RateLimit {
    /// Requests per minute and tenant; 0: no limit.
    limit: Cell<u64>,
    /// Minutes an idle tenant's window is kept.
    retention: Cell<u64>,
    windows: RefCell<HashMap<Arc<str>, Window>>,
    /// The minute windows were last pruned in.
    pruned: Cell<u64>,
}

impl RateLimit {
    pub fn set_limit(&self, limit: u64, retention_minutes: u64) {
        self.limit.set(limit);
        self.retention.set(retention_minutes.max(1));
    }

    pub fn limit(&self) -> u64 {
        self.limit.get()
    }

    /// Tenants with a window on this shard (`tenant_rate_window_entries`).
    pub fn entries(&self) -> usize {
        self.windows.borrow().len()
    }

    /// Admit one request of `tenant` at `now` (seconds since the epoch):
    /// `Ok` with the window's (minute, this shard's count) to report to the
    /// others, or `Err(seconds until the next window)`.
    pub fn admit(&self, tenant: &Arc<str>, now: u64) -> Result<(u64, u64), u64> {
        let limit = self.limit.get();
        let minute = now / 60;
        self.prune(minute);
        let mut windows = self.windows.borrow_mut();
        let w = windows.entry(tenant.clone()).or_default();
        if w.minute != minute {
            w.minute = minute;
            w.own = 0;
        }
        let others: u64 = w.peers.values().filter(|(m, _)| *m == minute).map(|(_, c)| c).sum();
        if w.own + others >= limit {
            return Err(60 - now % 60);
        }
        w.own += 1;
        Ok((minute, w.own))
    }

    /// Another shard's count of `tenant` for `minute`; an older report
    /// never replaces a newer one (messages from one shard arrive in order,
    /// but a report may cross a window change).
    pub fn record_peer(&self, tenant: &Arc<str>, from: ShardId, minute: u64, count: u64) {
        let mut windows = self.windows.borrow_mut();
        let w = windows.entry(tenant.clone()).or_default();
        let entry = w.peers.entry(from).or_insert((minute, count));
        if (minute, count) > *entry {
            *entry = (minute, count);
        }
    }

    /// Drop windows idle for the retention time (once per minute).
    fn prune(&self, minute: u64) {
        if self.pruned.replace(minute) == minute {
            return;
        }
        let keep_from = minute.saturating_sub(self.retention.get());
        self.windows.borrow_mut().retain(|_, w| {
            let last = w.peers.values().map(|(m, _)| *m).max().unwrap_or(0).max(w.minute);
            last >= keep_from
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_shard_and_resets_each_minute() {
        let r = RateLimit::default();
        r.set_limit(5, 60);
        let public: Arc<str> = "public".into();
        let t = 60 * 1000 + 10;
        assert_eq!(r.admit(&public, t), Ok((1000, 1)));
        assert_eq!(r.admit(&public, t), Ok((1000, 2)));
        r.record_peer(&public, 1, 1000, 3);
        // 2 here + 3 there: the limit is reached.
        assert_eq!(r.admit(&public, t + 5), Err(45));
        // A stale report from the last minute does not count now...
        r.record_peer(&public, 2, 999, 50);
        // ...and an older report does not replace a newer one.
        r.record_peer(&public, 1, 999, 0);
        assert_eq!(r.admit(&public, t + 49), Err(1));
        // Next minute: everybody starts from zero.
        assert_eq!(r.admit(&public, t + 50), Ok((1001, 1)));
        r.record_peer(&public, 1, 1001, 4);
        assert_eq!(r.admit(&public, t + 51), Err(59));
    }

    #[test]
    fn tenants_have_their_own_windows_and_idle_ones_go() {
        let r = RateLimit::default();
        r.set_limit(2, 3);
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let t = 60 * 500;
        assert!(r.admit(&a, t).is_ok() && r.admit(&a, t).is_ok());
        assert!(r.admit(&a, t).is_err(), "a is at its limit");
        assert!(r.admit(&b, t).is_ok(), "b is not");
        assert_eq!(r.entries(), 2);
        // Four minutes later only the tenant still calling keeps a window.
        assert!(r.admit(&b, t + 4 * 60).is_ok());
        assert_eq!(r.entries(), 1);
    }
}
