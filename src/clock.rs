//! The wall clock of a shard's requests, read once per heartbeat (issue 21).
//!
//! A request needs the time of day for its `Date` header and, with those
//! features on, the auth-failure budget's and the rate limit's minute. Read
//! and formatted per request, that was two clock reads and an HTTP date
//! formatted for every answer. Each shard's heartbeat (`runtime::HEARTBEAT`,
//! every 5 ms) now calls [`tick`], and requests read the second and the
//! formatted date it left; a thread without a heartbeat (tests, tools, the
//! stand-in responder) reads the clock itself.

use std::cell::{Cell, RefCell};
use std::time::{SystemTime, UNIX_EPOCH};

thread_local! {
    /// Unix seconds at this thread's last tick; 0: it never ticked.
    static SECONDS: Cell<u64> = const { Cell::new(0) };
    /// The `Date` header of that second.
    static DATE: RefCell<String> = const { RefCell::new(String::new()) };
}

fn read() -> (u64, SystemTime) {
    let now = SystemTime::now();
    (now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()), now)
}

/// Read the clock for this thread's requests (the heartbeat calls it).
pub fn tick() {
    let (seconds, now) = read();
    if SECONDS.get() != seconds {
        DATE.with_borrow_mut(|d| *d = httpdate::fmt_http_date(now));
        SECONDS.set(seconds);
    }
}

/// Unix seconds: as of this thread's last tick (at most one heartbeat
/// old), or read now if it never ticked.
pub fn unix_seconds() -> u64 {
    match SECONDS.get() {
        0 => read().0,
        s => s,
    }
}

/// The HTTP `Date` header value, as [`unix_seconds`] is.
pub fn http_date() -> String {
    match SECONDS.get() {
        0 => httpdate::fmt_http_date(SystemTime::now()),
        _ => DATE.with_borrow(Clone::clone),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticked_thread_reads_the_tick() {
        std::thread::spawn(|| {
            let before = read().0;
            assert!(unix_seconds().abs_diff(before) <= 1);
            assert_eq!(http_date().len(), 29);
            tick();
            let s = unix_seconds();
            assert!(s.abs_diff(before) <= 1);
            assert_eq!(http_date(), httpdate::fmt_http_date(UNIX_EPOCH + std::time::Duration::from_secs(s)));
        })
        .join()
        .unwrap();
    }
}
