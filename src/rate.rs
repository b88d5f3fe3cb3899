//! The request rate limit (API.md §8): at most `limit` requests per UTC
//! wall-clock minute (fixed window), all routes, counted across every
//! shard. With authentication off every caller is tenant `public`, so
//! there is one bucket.
//!
//! Each shard counts the requests it admitted in the current minute and
//! tells the other shards its count after every admission
//! (`router::Msg::Rate`); a shard admits a request while its own count plus
//! the latest counts the others reported for the same minute is below the
//! limit. Requests admitted at the same moment on two shards can pass the
//! limit by what is in flight between them; nothing is ever refused below it.

use aionbd_shards::placement::ShardId;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// One shard's view of the current minute's window.
#[derive(Default)]
pub struct RateLimit {
    /// Requests per minute; 0: no limit.
    limit: Cell<u64>,
    /// The minute (seconds since the epoch / 60) `own` counts.
    minute: Cell<u64>,
    own: Cell<u64>,
    /// Per other shard: (minute, count) it last reported.
    peers: RefCell<HashMap<ShardId, (u64, u64)>>,
}

impl RateLimit {
    pub fn set_limit(&self, limit: u64) {
        self.limit.set(limit);
    }

    pub fn limit(&self) -> u64 {
        self.limit.get()
    }

    /// Admit one request at `now` (seconds since the epoch): `Ok` with the
    /// window's (minute, this shard's count) to report to the others, or
    /// `Err(seconds until the next window)`.
    pub fn admit(&self, now: u64) -> Result<(u64, u64), u64> {
        let limit = self.limit.get();
        let minute = now / 60;
        if self.minute.get() != minute {
            self.minute.set(minute);
            self.own.set(0);
        }
        let others: u64 = self.peers.borrow().values().filter(|(m, _)| *m == minute).map(|(_, c)| c).sum();
        if self.own.get() + others >= limit {
            return Err(60 - now % 60);
        }
        self.own.set(self.own.get() + 1);
        Ok((minute, self.own.get()))
    }

    /// Another shard's count for `minute`; an older report never replaces
    /// a newer one (messages from one shard arrive in order, but a report
    /// may cross a window change).
    pub fn record_peer(&self, from: ShardId, minute: u64, count: u64) {
        let mut peers = self.peers.borrow_mut();
        let entry = peers.entry(from).or_insert((minute, count));
        if (minute, count) > *entry {
            *entry = (minute, count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_shard_and_resets_each_minute() {
        let r = RateLimit::default();
        r.set_limit(5);
        let t = 60 * 1000 + 10;
        assert_eq!(r.admit(t), Ok((1000, 1)));
        assert_eq!(r.admit(t), Ok((1000, 2)));
        r.record_peer(1, 1000, 3);
        // 2 here + 3 there: the limit is reached.
        assert_eq!(r.admit(t + 5), Err(45));
        // A stale report from the last minute does not count now...
        r.record_peer(2, 999, 50);
        // ...and an older report does not replace a newer one.
        r.record_peer(1, 999, 0);
        assert_eq!(r.admit(t + 49), Err(1));
        // Next minute: everybody starts from zero.
        assert_eq!(r.admit(t + 50), Ok((1001, 1)));
        r.record_peer(1, 1001, 4);
        assert_eq!(r.admit(t + 51), Err(59));
    }
}
