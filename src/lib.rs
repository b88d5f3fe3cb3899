//! The `aionbd` server: configuration, the per-shard node, the dispatcher
//! role (API handlers that route and merge) and start-up wiring. The binary
//! (`main.rs`) is a thin shell over [`runtime::start`]; benches and tests use
//! the modules directly.

pub mod api;
pub mod auth;
pub mod background;
pub mod backup;
pub mod clock;
pub mod config;
pub mod datadir;
pub mod debug_hooks;
pub mod fs;
pub mod indexer;
pub mod log;
pub mod metrics;
pub mod nice;
pub mod node;
pub mod notify;
pub mod offline;
pub mod queries_file;
pub mod rate;
pub mod reclaim;
pub mod recovering;
pub mod reload;
pub mod replay;
pub mod restore;
pub mod router;
pub mod rows_file;
pub mod runtime;
pub mod serve;
pub mod snapshot;
pub mod tls;
pub mod transfer;
pub mod wal;
pub mod watchdog;
