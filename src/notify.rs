//! systemd's notify protocol, through the `sd-notify` crate: `READY=1` once
//! every shard serves, `STATUS=` lines while the data is recovered,
//! `STOPPING=1` when a stop begins, and `WATCHDOG=1` pings while every shard
//! keeps turning (driven by the shard heartbeats `watchdog` already
//! watches). Without `NOTIFY_SOCKET` (not under systemd) every call is a
//! no-op.

use sd_notify::NotifyState;

pub fn status(text: &str) {
    let _ = sd_notify::notify(&[NotifyState::Status(text)]);
}

pub fn ready(text: &str) {
    let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(text)]);
}

pub fn stopping() {
    let _ = sd_notify::notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

pub fn watchdog() {
    let _ = sd_notify::notify(&[NotifyState::Watchdog]);
}

/// The systemd watchdog interval (`WatchdogSec=`), if one is set for us.
pub fn watchdog_interval() -> Option<std::time::Duration> {
    sd_notify::watchdog_enabled()
}
