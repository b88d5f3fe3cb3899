//! Configuration: built-in defaults, then `config.toml` (if `--config` names
//! one), then `AIONBD_*` environment variables, then command-line flags. Raw
//! text is gathered first; a second step turns it into a typed [`Config`]
//! and reports every problem at once.

use clap::Parser;
use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

/// One setting: its key in `config.toml` (`section.name`), its environment
/// variable, its built-in default (as text) and what it means.
pub struct Setting {
    pub key: &'static str,
    pub env: &'static str,
    pub default: &'static str,
}

macro_rules! settings {
    ($(($key:literal, $env:literal, $default:literal)),* $(,)?) => {
        pub const SETTINGS: &[Setting] = &[$(Setting { key: $key, env: $env, default: $default }),*];
    };
}

settings![
    ("server.bind", "AIONBD_BIND", "127.0.0.1:8080"),
    ("server.data_dir", "AIONBD_DATA_DIR", "./data"),
    ("server.shards", "AIONBD_SHARDS", "0"),
    ("server.allow_more_shards_than_cpus", "AIONBD_ALLOW_MORE_SHARDS_THAN_CPUS", "false"),
    ("server.partitions_per_collection", "AIONBD_PARTITIONS_PER_COLLECTION", "0"),
    ("server.spin_before_park_us", "AIONBD_SPIN_BEFORE_PARK_US", "50"),
    ("server.io_memory_bytes", "AIONBD_IO_MEMORY_BYTES", "262144"),
    ("server.ring_depth", "AIONBD_RING_DEPTH", "128"),
    ("server.max_concurrency", "AIONBD_MAX_CONCURRENCY", "256"),
    ("server.request_timeout_ms", "AIONBD_REQUEST_TIMEOUT_MS", "2000"),
    ("server.max_body_bytes", "AIONBD_MAX_BODY_BYTES", "8388608"),
    ("server.max_head_bytes", "AIONBD_MAX_HEAD_BYTES", "16384"),
    ("server.request_read_timeout_ms", "AIONBD_REQUEST_READ_TIMEOUT_MS", "10000"),
    ("server.idle_timeout_ms", "AIONBD_IDLE_TIMEOUT_MS", "60000"),
    ("server.max_connections_per_shard", "AIONBD_MAX_CONNECTIONS_PER_SHARD", "1024"),
    ("server.log", "AIONBD_LOG", "info"),
    ("server.log_format", "AIONBD_LOG_FORMAT", "text"),
    ("limits.max_dimension", "AIONBD_MAX_DIMENSION", "4096"),
    ("limits.max_points_per_collection", "AIONBD_MAX_POINTS_PER_COLLECTION", "1000000"),
    ("limits.max_topk_limit", "AIONBD_MAX_TOPK_LIMIT", "1000"),
    ("limits.max_page_limit", "AIONBD_MAX_PAGE_LIMIT", "1000"),
    ("limits.upsert_batch_max_points", "AIONBD_UPSERT_BATCH_MAX_POINTS", "256"),
    ("limits.search_batch_max_queries", "AIONBD_SEARCH_BATCH_MAX_QUERIES", "256"),
    ("limits.strict_finite", "AIONBD_STRICT_FINITE", "true"),
    ("limits.memory_budget_bytes", "AIONBD_MEMORY_BUDGET_BYTES", "0"),
    ("persistence.enabled", "AIONBD_PERSISTENCE_ENABLED", "true"),
    ("persistence.wal_sync_on_write", "AIONBD_WAL_SYNC_ON_WRITE", "true"),
    ("persistence.wal_segment_bytes", "AIONBD_WAL_SEGMENT_BYTES", "67108864"),
    ("persistence.wal_sync_every_n_writes", "AIONBD_WAL_SYNC_EVERY_N_WRITES", "0"),
    ("persistence.wal_sync_interval_seconds", "AIONBD_WAL_SYNC_INTERVAL_SECONDS", "0"),
    ("persistence.wal_group_commit_max_batch", "AIONBD_WAL_GROUP_COMMIT_MAX_BATCH", "16"),
    ("persistence.wal_group_commit_flush_delay_ms", "AIONBD_WAL_GROUP_COMMIT_FLUSH_DELAY_MS", "0"),
    ("persistence.checkpoint_interval", "AIONBD_CHECKPOINT_INTERVAL", "32"),
    ("persistence.async_checkpoints", "AIONBD_ASYNC_CHECKPOINTS", "false"),
    ("persistence.checkpoint_compact_after", "AIONBD_CHECKPOINT_COMPACT_AFTER", "64"),
    ("persistence.snapshot_min_wal_bytes", "AIONBD_SNAPSHOT_MIN_WAL_BYTES", "67108864"),
    ("persistence.snapshot_wal_percent", "AIONBD_SNAPSHOT_WAL_PERCENT", "50"),
    ("persistence.wal_truncate_corrupt", "AIONBD_WAL_TRUNCATE_CORRUPT", "false"),
    ("persistence.backup_dir", "AIONBD_BACKUP_DIR", ""),
    ("index.hnsw_m", "AIONBD_HNSW_M", "16"),
    ("index.hnsw_ef_construction", "AIONBD_HNSW_EF_CONSTRUCTION", "100"),
    ("index.memory_mode", "AIONBD_MEMORY_MODE", "full"),
    ("index.background_nice", "AIONBD_INDEX_BACKGROUND_NICE", "0"),
    ("security.auth_mode", "AIONBD_AUTH_MODE", "disabled"),
    ("security.api_keys", "AIONBD_AUTH_API_KEYS", ""),
    ("security.api_key_scopes", "AIONBD_AUTH_API_KEY_SCOPES", ""),
    ("security.bearer_tokens", "AIONBD_AUTH_BEARER_TOKENS", ""),
    ("security.jwt_hs256_secret", "AIONBD_AUTH_JWT_HS256_SECRET", ""),
    ("security.jwt_issuer", "AIONBD_AUTH_JWT_ISSUER", ""),
    ("security.jwt_audience", "AIONBD_AUTH_JWT_AUDIENCE", ""),
    ("security.jwt_tenant_claim", "AIONBD_AUTH_JWT_TENANT_CLAIM", "tenant"),
    ("security.jwt_principal_claim", "AIONBD_AUTH_JWT_PRINCIPAL_CLAIM", "sub"),
    ("security.jwt_public_keys", "AIONBD_AUTH_JWT_PUBLIC_KEYS", ""),
    ("security.jwt_jwks_path", "AIONBD_AUTH_JWT_JWKS_PATH", ""),
    ("security.auth_open_health", "AIONBD_AUTH_OPEN_HEALTH", "false"),
    ("security.auth_failure_limit_per_minute", "AIONBD_AUTH_FAILURE_LIMIT_PER_MINUTE", "60"),
    ("security.auth_metrics_admin", "AIONBD_AUTH_METRICS_ADMIN", "false"),
    ("security.cors_allowed_origins", "AIONBD_CORS_ALLOWED_ORIGINS", ""),
    ("security.tls_enabled", "AIONBD_TLS_ENABLED", "false"),
    ("security.tls_cert_path", "AIONBD_TLS_CERT_PATH", ""),
    ("security.tls_key_path", "AIONBD_TLS_KEY_PATH", ""),
    ("security.rate_limit_per_minute", "AIONBD_AUTH_RATE_LIMIT_PER_MINUTE", "0"),
    ("security.rate_window_retention_minutes", "AIONBD_AUTH_RATE_WINDOW_RETENTION_MINUTES", "60"),
    ("security.tenant_max_collections", "AIONBD_AUTH_TENANT_MAX_COLLECTIONS", "0"),
    ("security.tenant_max_points", "AIONBD_AUTH_TENANT_MAX_POINTS", "0"),
];

#[derive(Parser, Debug, Default, Clone)]
#[command(name = "aionbd", version, about = "AIONBD: edge-first vector database server")]
pub struct Cli {
    /// Read settings from this TOML file (see the shipped config.toml).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Listen address (server.bind).
    #[arg(long)]
    pub bind: Option<String>,
    /// Data directory (server.data_dir).
    #[arg(long)]
    pub data_dir: Option<String>,
    /// Shards = pinned executor threads; 0 = one per CPU (server.shards).
    #[arg(long)]
    pub shards: Option<String>,
    /// Partitions per collection; 0 = one per shard.
    #[arg(long)]
    pub partitions_per_collection: Option<String>,
    /// Any setting as `section.key=value`, repeatable (e.g. `--set limits.max_dimension=1024`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Start even if a WAL is damaged before its tail: cut it at the first
    /// bad record and report the lost LSN range (persistence.wal_truncate_corrupt).
    #[arg(long)]
    pub wal_truncate_corrupt: bool,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Refuse to start when an AIONBD_* environment variable is unknown
    /// (without it, unknown ones are only warned about).
    #[arg(long)]
    pub strict_env: bool,
    /// A tool instead of the server (backup, restore, import, export).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// `aionbd <command>`: tools around the server (docs/backup.md).
#[derive(clap::Subcommand, Debug, Clone)]
pub enum Command {
    /// Rebuild a data directory from a backup file (offline: no server may
    /// use the directory). The whole file is verified before anything is
    /// written.
    Restore {
        /// The backup file (from GET /backup or POST /backups).
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// The data directory to create (new or empty, unless --force).
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// Shards to lay the data out for (0: one per CPU). A server started
        /// with other counts re-lays it out at start.
        #[arg(long, default_value_t = 0)]
        shards: usize,
        /// Partitions per collection (0: one per shard).
        #[arg(long, default_value_t = 0)]
        partitions_per_collection: usize,
        /// Replace what the directory holds.
        #[arg(long)]
        force: bool,
    },
    /// Verify every snapshot and WAL checksum of a data directory (or a
    /// backup file) and say what a restart would do. Exit 0: clean (or only
    /// a torn tail, which a restart repairs); 1: damage.
    Check {
        /// A data directory.
        #[arg(long, value_name = "DIR", required_unless_present = "backup", conflicts_with = "backup")]
        data_dir: Option<PathBuf>,
        /// A backup file.
        #[arg(long, value_name = "FILE")]
        backup: Option<PathBuf>,
    },
    /// Load points into a running server from NDJSON, fvecs or npy.
    Import(crate::transfer::ImportArgs),
    /// Save a collection of a running server as NDJSON.
    Export(crate::transfer::ExportArgs),
}

#[derive(Clone, Debug, PartialEq)]
pub struct PersistenceConfig {
    pub enabled: bool,
    pub wal_sync_on_write: bool,
    pub wal_segment_bytes: u64,
    pub wal_sync_every_n_writes: u64,
    pub wal_sync_interval_seconds: u64,
    pub wal_group_commit_max_batch: u64,
    pub wal_group_commit_flush_delay_ms: u64,
    pub checkpoint_interval: u64,
    pub async_checkpoints: bool,
    pub checkpoint_compact_after: u64,
    pub snapshot_min_wal_bytes: u64,
    pub snapshot_wal_percent: u64,
    pub wal_truncate_corrupt: bool,
    /// Where `POST /backups` keeps backups (default: `<data_dir>/backups`).
    pub backup_dir: PathBuf,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub bind: SocketAddr,
    pub data_dir: PathBuf,
    pub shards: usize,
    pub partitions_per_collection: usize,
    pub spin_before_park_us: u64,
    /// Bytes each shard registers with io_uring for I/O buffers.
    pub io_memory_bytes: usize,
    /// Log filter (`RUST_LOG` overrides it) and line format.
    pub log: String,
    pub log_format: crate::log::Format,
    /// Entries of each shard's io_uring submission rings.
    pub ring_depth: usize,
    /// More shards than CPUs: executors are not pinned (tests, or moving a
    /// data directory between layouts on a small box).
    pub oversubscribed: bool,
    pub max_concurrency: usize,
    pub request_timeout_ms: u64,
    pub max_body_bytes: usize,
    pub max_head_bytes: usize,
    pub request_read_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub max_connections_per_shard: usize,
    pub max_dimension: usize,
    pub max_points_per_collection: u64,
    pub max_topk_limit: usize,
    pub max_page_limit: usize,
    pub upsert_batch_max_points: usize,
    pub search_batch_max_queries: usize,
    pub strict_finite: bool,
    pub memory_budget_bytes: u64,
    /// Requests per tenant per UTC minute, all routes, all shards (0: no limit).
    pub rate_limit_per_minute: u64,
    /// Minutes an idle tenant's rate window is kept.
    pub rate_window_retention_minutes: u64,
    /// Collections and points per tenant (0: no limit).
    pub tenant_quota: aionbd_shards::quota::TenantQuota,
    /// Authentication settings (built into `auth::Auth` at start-up).
    pub auth: crate::auth::Settings,
    /// With auth on, `/live` and `/ready` answer without credentials.
    pub auth_open_health: bool,
    /// With auth on, `/metrics*` need scope `admin`.
    pub auth_metrics_admin: bool,
    /// Failed authentication attempts per source address per minute and
    /// shard before the source gets 429 (0: no limit).
    pub auth_failure_limit_per_minute: u64,
    /// Origins browsers may call from (CORS): `*`, or exact origins; empty:
    /// no CORS headers.
    pub cors_allowed_origins: Vec<String>,
    /// HTTPS: certificate chain and private key (PEM files); `None`: HTTP.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub persistence: PersistenceConfig,
    /// HNSW graph settings for every partition.
    pub hnsw: aionbd_shards::index::hnsw::HnswParams,
    /// Memory-light mode: rows the graph holds live in rows files on disk.
    pub memory_light: bool,
    /// Nice value of index steps (0: the process's; see `crate::nice`):
    /// as configured, then as `nice::resolve` allowed at start.
    pub background_nice: i32,
}

/// Variables the original server read that this one accepts and ignores
/// (API.md §9 marks them as engine knobs that need not be honoured), and
/// the original's alternative names handled in `gather`.
const KNOWN_ELSEWHERE: &[&str] = &[
    "AIONBD_MEMORY_BUDGET_MB",
    "AIONBD_AUTH_JWT_TOKENS",
    "AIONBD_SNAPSHOT_PATH",
    "AIONBD_WAL_PATH",
    "AIONBD_IVF_NPROBE_DEFAULT",
    "AIONBD_IVF_KMEANS_MAX_TRAINING_POINTS",
    "AIONBD_L2_INDEX_BUILD_COOLDOWN_MS",
    "AIONBD_L2_INDEX_BUILD_MAX_IN_FLIGHT",
    "AIONBD_L2_INDEX_WARMUP_ON_BOOT",
    "AIONBD_AUTO_BATCH_EXACT_PREFER_MIN_QUERIES",
];

/// `AIONBD_*` names in `vars` that no setting reads: typos, or variables of
/// another version. Test hooks (`AIONBD_DEBUG_*`) and the original's engine
/// knob families (`AIONBD_EXACT_BATCH_*`, `AIONBD_PARALLEL_*`,
/// `AIONBD_SEARCH_INLINE_*`) are not reported.
pub fn unknown_env(vars: impl Iterator<Item = String>) -> Vec<String> {
    let families = ["AIONBD_DEBUG_", "AIONBD_EXACT_BATCH_", "AIONBD_PARALLEL_", "AIONBD_SEARCH_INLINE_"];
    let mut out: Vec<String> = vars
        .filter(|k| k.starts_with("AIONBD_"))
        .filter(|k| !SETTINGS.iter().any(|s| s.env == k))
        .filter(|k| !KNOWN_ELSEWHERE.contains(&k.as_str()) && !families.iter().any(|f| k.starts_with(f)))
        .collect();
    out.sort();
    out
}

/// Raw settings as text, with where each came from (for error messages).
pub type RawSettings = BTreeMap<&'static str, (String, String)>;

pub fn defaults() -> RawSettings {
    SETTINGS.iter().map(|s| (s.key, (s.default.to_owned(), "default".to_owned()))).collect()
}

fn setting(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.key == key)
}

/// Flatten a TOML document into `section.key -> text`, reporting unknown keys.
pub fn parse_toml(text: &str, origin: &str, errors: &mut Vec<String>) -> Vec<(&'static str, String)> {
    let table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            errors.push(format!("{origin}: not valid TOML: {e}"));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (section, value) in &table {
        let Some(inner) = value.as_table() else {
            errors.push(format!("{origin}: '{section}' must be a [section]"));
            continue;
        };
        for (name, v) in inner {
            let key = format!("{section}.{name}");
            let Some(s) = setting(&key) else {
                errors.push(format!("{origin}: unknown setting '{key}'"));
                continue;
            };
            let text = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Float(f) => f.to_string(),
                other => {
                    errors.push(format!("{origin}: '{key}' has unsupported value {other}"));
                    continue;
                }
            };
            out.push((s.key, text));
        }
    }
    out
}

/// Gather raw settings from every layer. `env` is injected for tests.
pub fn gather(cli: &Cli, env: &dyn Fn(&str) -> Option<String>, errors: &mut Vec<String>) -> RawSettings {
    let mut raw = defaults();
    if let Some(path) = &cli.config {
        let origin = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                for (k, v) in parse_toml(&text, &origin, errors) {
                    raw.insert(k, (v, origin.clone()));
                }
            }
            Err(e) => errors.push(format!("{origin}: cannot read config file: {e}")),
        }
    }
    for s in SETTINGS {
        if let Some(v) = env(s.env) {
            raw.insert(s.key, (v, s.env.to_owned()));
        }
    }
    // The original's legacy name for opaque bearer tokens.
    if env("AIONBD_AUTH_BEARER_TOKENS").is_none() {
        if let Some(v) = env("AIONBD_AUTH_JWT_TOKENS") {
            raw.insert("security.bearer_tokens", (v, "AIONBD_AUTH_JWT_TOKENS".into()));
        }
    }
    // The original's megabyte budget; the byte form wins when both are set.
    if env("AIONBD_MEMORY_BUDGET_BYTES").is_none() {
        if let Some(mb) = env("AIONBD_MEMORY_BUDGET_MB") {
            match mb.trim().parse::<u64>() {
                Ok(m) => {
                    raw.insert(
                        "limits.memory_budget_bytes",
                        ((m * 1024 * 1024).to_string(), "AIONBD_MEMORY_BUDGET_MB".into()),
                    );
                }
                Err(_) => errors.push(format!("AIONBD_MEMORY_BUDGET_MB: '{mb}' is not a whole number")),
            }
        }
    }
    let flags = [
        ("server.bind", &cli.bind),
        ("server.data_dir", &cli.data_dir),
        ("server.shards", &cli.shards),
        ("server.partitions_per_collection", &cli.partitions_per_collection),
    ];
    for (key, v) in flags {
        if let Some(v) = v {
            raw.insert(key, (v.clone(), format!("--{}", key.split('.').nth(1).unwrap().replace('_', "-"))));
        }
    }
    if cli.wal_truncate_corrupt {
        raw.insert("persistence.wal_truncate_corrupt", ("true".into(), "--wal-truncate-corrupt".into()));
    }
    for kv in &cli.set {
        match kv.split_once('=').map(|(k, v)| (setting(k.trim()), v)) {
            Some((Some(s), v)) => {
                raw.insert(s.key, (v.trim().to_owned(), "--set".into()));
            }
            Some((None, _)) => errors.push(format!("--set {kv}: unknown setting")),
            None => errors.push(format!("--set {kv}: expected KEY=VALUE")),
        }
    }
    raw
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

struct Typer<'a> {
    raw: &'a RawSettings,
    errors: &'a mut Vec<String>,
}

impl<'a> Typer<'a> {
    fn text(&self, key: &str) -> (&'a str, &'a str) {
        let raw: &'a RawSettings = self.raw;
        let (v, origin) = &raw[key];
        (v.trim(), origin)
    }

    fn num<T: std::str::FromStr + Default + PartialOrd + std::fmt::Display>(&mut self, key: &str, min: T) -> T {
        let (v, origin) = self.text(key);
        match v.parse::<T>() {
            Ok(n) if n >= min => n,
            Ok(n) => {
                self.errors.push(format!("{key} = {n} (from {origin}): must be at least {min}"));
                T::default()
            }
            Err(_) => {
                self.errors.push(format!("{key} = '{v}' (from {origin}): not a whole number"));
                T::default()
            }
        }
    }

    fn flag(&mut self, key: &str) -> bool {
        let (v, origin) = self.text(key);
        parse_bool(v).unwrap_or_else(|| {
            self.errors.push(format!("{key} = '{v}' (from {origin}): expected true/false/1/0/yes/no/on/off"));
            false
        })
    }
}

/// Turn raw settings into a typed config, or every problem found.
pub fn build(raw: &RawSettings, cpus: usize, mut errors: Vec<String>) -> Result<Config, Vec<String>> {
    let mut t = Typer { raw, errors: &mut errors };
    let (bind_text, bind_origin) = t.text("server.bind");
    let bind = match bind_text.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(a)) => Some(a),
        _ => {
            let msg = format!("server.bind = '{bind_text}' (from {bind_origin}): not a host:port address");
            t.errors.push(msg);
            None
        }
    };
    let data_dir = PathBuf::from(t.text("server.data_dir").0);
    let shards_req: usize = t.num("server.shards", 0);
    let shards = if shards_req == 0 { cpus } else { shards_req };
    let oversubscribed = shards > cpus;
    if oversubscribed && !t.flag("server.allow_more_shards_than_cpus") {
        t.errors.push(format!(
            "server.shards = {shards}: this machine has {cpus} CPUs (one pinned shard per CPU at most; \
             server.allow_more_shards_than_cpus = true runs them unpinned)"
        ));
    }
    let parts_req: usize = t.num("server.partitions_per_collection", 0);
    let partitions_per_collection = if parts_req == 0 { shards } else { parts_req };
    if partitions_per_collection > shards {
        t.errors.push(format!(
            "server.partitions_per_collection = {partitions_per_collection}: at most one partition per shard ({shards} shards)"
        ));
    }
    let hnsw_m: usize = t.num("index.hnsw_m", 2);
    if hnsw_m > 64 {
        t.errors.push(format!("index.hnsw_m = {hnsw_m}: at most 64"));
    }
    let hnsw = aionbd_shards::index::hnsw::HnswParams {
        m: hnsw_m.clamp(2, 64),
        ef_construction: t.num("index.hnsw_ef_construction", 1),
    };
    let (mode, mode_origin) = t.text("index.memory_mode");
    let memory_light = mode == "light";
    if !matches!(mode, "full" | "light") {
        t.errors.push(format!("index.memory_mode = {mode:?} (from {mode_origin}): \"full\" or \"light\""));
    }
    let background_nice: i32 = t.num("index.background_nice", 0);
    if background_nice > 19 {
        t.errors.push(format!("index.background_nice = {background_nice}: 0 (off) to 19"));
    }
    let (log, log_origin) = t.text("server.log");
    if let Err(e) = crate::log::parse_filter(log) {
        t.errors.push(format!("server.log = {e} (from {log_origin})"));
    }
    let (format, format_origin) = t.text("server.log_format");
    if let Err(e) = format.parse::<crate::log::Format>() {
        t.errors.push(format!("server.log_format = {e} (from {format_origin})"));
    }
    let mut cfg = Config {
        hnsw,
        memory_light,
        background_nice: background_nice.min(19),
        bind: bind.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
        data_dir: data_dir.clone(),
        shards,
        partitions_per_collection: partitions_per_collection.clamp(1, shards.max(1)),
        spin_before_park_us: t.num("server.spin_before_park_us", 0),
        io_memory_bytes: t.num("server.io_memory_bytes", 64 << 10),
        log: t.text("server.log").0.to_owned(),
        log_format: t.text("server.log_format").0.parse().unwrap_or(crate::log::Format::Text),
        ring_depth: t.num("server.ring_depth", 8),
        oversubscribed,
        max_concurrency: t.num("server.max_concurrency", 1),
        request_timeout_ms: t.num("server.request_timeout_ms", 1),
        max_body_bytes: t.num("server.max_body_bytes", 1),
        max_head_bytes: t.num("server.max_head_bytes", 1024),
        request_read_timeout_ms: t.num("server.request_read_timeout_ms", 1),
        idle_timeout_ms: t.num("server.idle_timeout_ms", 1),
        max_connections_per_shard: t.num("server.max_connections_per_shard", 1),
        max_dimension: t.num("limits.max_dimension", 1),
        max_points_per_collection: t.num("limits.max_points_per_collection", 1),
        max_topk_limit: t.num("limits.max_topk_limit", 1),
        max_page_limit: t.num("limits.max_page_limit", 1),
        upsert_batch_max_points: t.num("limits.upsert_batch_max_points", 1),
        search_batch_max_queries: t.num("limits.search_batch_max_queries", 1),
        strict_finite: t.flag("limits.strict_finite"),
        memory_budget_bytes: t.num("limits.memory_budget_bytes", 0),
        rate_limit_per_minute: t.num("security.rate_limit_per_minute", 0),
        rate_window_retention_minutes: 60,
        tenant_quota: Default::default(),
        tls: None,
        auth: Default::default(),
        auth_open_health: false,
        auth_metrics_admin: false,
        auth_failure_limit_per_minute: 60,
        cors_allowed_origins: Vec::new(),
        persistence: PersistenceConfig {
            enabled: t.flag("persistence.enabled"),
            wal_sync_on_write: t.flag("persistence.wal_sync_on_write"),
            wal_segment_bytes: t.num("persistence.wal_segment_bytes", 1 << 20),
            wal_sync_every_n_writes: t.num("persistence.wal_sync_every_n_writes", 0),
            wal_sync_interval_seconds: t.num("persistence.wal_sync_interval_seconds", 0),
            wal_group_commit_max_batch: t.num("persistence.wal_group_commit_max_batch", 1),
            wal_group_commit_flush_delay_ms: t.num("persistence.wal_group_commit_flush_delay_ms", 0),
            checkpoint_interval: t.num("persistence.checkpoint_interval", 1),
            async_checkpoints: t.flag("persistence.async_checkpoints"),
            checkpoint_compact_after: t.num("persistence.checkpoint_compact_after", 1),
            snapshot_min_wal_bytes: t.num("persistence.snapshot_min_wal_bytes", 0),
            snapshot_wal_percent: t.num("persistence.snapshot_wal_percent", 1),
            wal_truncate_corrupt: t.flag("persistence.wal_truncate_corrupt"),
            backup_dir: match t.text("persistence.backup_dir").0 {
                "" => data_dir.join("backups"),
                dir => PathBuf::from(dir),
            },
        },
    };
    if !cfg.persistence.wal_segment_bytes.is_multiple_of(4096) || cfg.persistence.wal_segment_bytes > u32::MAX as u64 {
        t.errors.push(format!(
            "persistence.wal_segment_bytes = {}: must be a multiple of 4096 and below 4 GiB",
            cfg.persistence.wal_segment_bytes
        ));
    }
    let text = |k: &str| raw[k].0.trim().to_owned();
    cfg.auth = crate::auth::Settings {
        mode: text("security.auth_mode"),
        api_keys: text("security.api_keys"),
        api_key_scopes: text("security.api_key_scopes"),
        bearer_tokens: text("security.bearer_tokens"),
        jwt_hs256_secret: raw["security.jwt_hs256_secret"].0.clone(),
        jwt_issuer: text("security.jwt_issuer"),
        jwt_audience: text("security.jwt_audience"),
        jwt_tenant_claim: text("security.jwt_tenant_claim"),
        jwt_principal_claim: text("security.jwt_principal_claim"),
        jwt_public_keys: text("security.jwt_public_keys"),
        jwt_jwks_path: text("security.jwt_jwks_path"),
    };
    if let Err(errs) = crate::auth::Auth::build(&cfg.auth) {
        t.errors.extend(errs);
    }
    cfg.auth_open_health = t.flag("security.auth_open_health");
    cfg.auth_metrics_admin = t.flag("security.auth_metrics_admin");
    cfg.auth_failure_limit_per_minute = t.num("security.auth_failure_limit_per_minute", 0);
    let (origins, origin_src) = t.text("security.cors_allowed_origins");
    for o in origins.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let scheme_ok = o.starts_with("http://") || o.starts_with("https://");
        if o != "*" && (!scheme_ok || o.ends_with('/') || o.matches('/').count() != 2) {
            t.errors.push(format!(
                "security.cors_allowed_origins: '{o}' (from {origin_src}) is not an origin: use '*' or \
                 scheme://host[:port], e.g. https://app.example.com"
            ));
        }
        cfg.cors_allowed_origins.push(o.to_owned());
    }
    cfg.rate_window_retention_minutes = t.num("security.rate_window_retention_minutes", 1);
    cfg.tenant_quota = aionbd_shards::quota::TenantQuota {
        max_collections: t.num("security.tenant_max_collections", 0),
        max_points: t.num("security.tenant_max_points", 0),
    };
    let quota_set = cfg.tenant_quota != Default::default();
    if quota_set && crate::auth::Mode::parse(&cfg.auth.mode) == Some(crate::auth::Mode::Disabled) {
        t.errors.push(
            "security.tenant_max_collections / tenant_max_points need authentication on (security.auth_mode): \
             with it off there are no tenants to count for (docs/auth.md)"
                .into(),
        );
    }
    if t.flag("security.tls_enabled") {
        let (cert, key) = (t.text("security.tls_cert_path").0, t.text("security.tls_key_path").0);
        if cert.is_empty() || key.is_empty() {
            t.errors.push(
                "security.tls_enabled = true needs security.tls_cert_path and security.tls_key_path \
                 (AIONBD_TLS_CERT_PATH, AIONBD_TLS_KEY_PATH: PEM files)"
                    .into(),
            );
        } else {
            cfg.tls = Some((PathBuf::from(cert), PathBuf::from(key)));
        }
    }
    if errors.is_empty() {
        Ok(cfg)
    } else {
        Err(errors)
    }
}

/// Effective configuration as TOML (for `--print-config`).
/// Settings whose values are secrets: shown as fingerprints only.
const SECRETS: &[&str] =
    &["security.api_keys", "security.api_key_scopes", "security.bearer_tokens", "security.jwt_hs256_secret"];

pub fn render(raw: &RawSettings) -> String {
    let mut out = String::new();
    let mut section = "";
    for (key, (value, _)) in raw {
        let masked;
        let value = if SECRETS.contains(key) && !value.is_empty() {
            masked = format!("<secret {}>", crate::auth::fingerprint(value));
            &masked
        } else {
            value
        };
        let (sec, name) = key.split_once('.').unwrap();
        if sec != section {
            out.push_str(&format!("{}[{sec}]\n", if section.is_empty() { "" } else { "\n" }));
            section = sec;
        }
        let quoted = value.parse::<i64>().is_err() && parse_bool(value).is_none();
        if quoted {
            out.push_str(&format!("{name} = {:?}\n", value));
        } else {
            out.push_str(&format!("{name} = {}\n", value.to_ascii_lowercase()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_toml_equals_built_in_defaults() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml")).unwrap();
        let mut errors = Vec::new();
        let parsed: BTreeMap<&str, String> = parse_toml(&text, "config.toml", &mut errors).into_iter().collect();
        assert!(errors.is_empty(), "{errors:?}");
        let defaults: BTreeMap<&str, String> = SETTINGS.iter().map(|s| (s.key, s.default.to_owned())).collect();
        assert_eq!(parsed, defaults, "config.toml must list every setting with its built-in default");
    }

    #[test]
    fn layers_apply_in_order_and_every_error_is_reported() {
        let cli = Cli { bind: Some("127.0.0.1:9000".into()), ..Cli::default() };
        let env = |k: &str| match k {
            "AIONBD_BIND" => Some("127.0.0.1:7000".to_owned()),
            "AIONBD_MAX_DIMENSION" => Some("12".to_owned()),
            "AIONBD_MEMORY_BUDGET_MB" => Some("2".to_owned()),
            _ => None,
        };
        let mut errors = Vec::new();
        let raw = gather(&cli, &env, &mut errors);
        let cfg = build(&raw, 2, errors).unwrap();
        assert_eq!(cfg.bind.port(), 9000);
        assert_eq!(cfg.max_dimension, 12);
        assert_eq!(cfg.memory_budget_bytes, 2 * 1024 * 1024);
        assert_eq!(cfg.shards, 2);

        let env = |k: &str| match k {
            "AIONBD_MAX_DIMENSION" => Some("zero".to_owned()),
            "AIONBD_WAL_SYNC_ON_WRITE" => Some("maybe".to_owned()),
            "AIONBD_SHARDS" => Some("64".to_owned()),
            _ => None,
        };
        let mut errors = Vec::new();
        let raw = gather(&Cli::default(), &env, &mut errors);
        let errs = build(&raw, 2, errors).unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
    }
}
