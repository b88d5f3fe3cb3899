//! `aionbd`: the server binary. Parses configuration, starts one pinned
//! executor per shard, prints the address it listens on, and shuts down
//! cleanly on SIGINT or SIGTERM.

use aionbd::reload::CredentialsError;
use aionbd::{api, config, recovering, runtime};
use clap::Parser;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

fn main() {
    // A shard thread that panicked would leave its data unreachable while
    // the other shards serve on, so requests touching it would hang until
    // they time out. End the process instead: every acknowledged write is
    // in the WAL, and a supervisor (systemd: Restart=) starts it again.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        eprintln!("aionbd: a thread panicked; aborting the process (acknowledged writes are in the WAL)");
        std::process::abort();
    }));
    let started = Instant::now();
    let cli = config::Cli::parse();
    if let Some(cmd) = &cli.command {
        std::process::exit(run_tool(cmd));
    }
    let mut errors = Vec::new();
    let env = |k: &str| std::env::var(k).ok();
    let raw = config::gather(&cli, &env, &mut errors);
    let unknown = config::unknown_env(std::env::vars().map(|(k, _)| k));
    let mut warning = None;
    if !unknown.is_empty() {
        let msg = format!(
            "unknown environment variable{} {} (no setting reads {}; see config.toml for the names)",
            if unknown.len() == 1 { "" } else { "s" },
            unknown.join(", "),
            if unknown.len() == 1 { "it" } else { "them" }
        );
        if cli.strict_env {
            errors.push(format!("{msg}; --strict-env refuses to start"));
        } else {
            warning = Some(msg);
        }
    }
    if cli.print_config {
        print!("{}", config::render(&raw));
        return;
    }
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let cfg = match config::build(&raw, cpus, errors) {
        Ok(c) => c,
        Err(errs) => {
            eprintln!(
                "aionbd: invalid configuration ({} problem{}):",
                errs.len(),
                if errs.len() == 1 { "" } else { "s" }
            );
            for e in errs {
                eprintln!("  - {e}");
            }
            std::process::exit(2);
        }
    };
    if let Err(e) = aionbd::log::init(&cfg.log, cfg.log_format) {
        eprintln!("aionbd: {e}");
        std::process::exit(2);
    }
    aionbd::reclaim::fixed_mmap_threshold(cfg.memory_light);
    if let Some(w) = warning {
        tracing::warn!("{w}");
    }
    let (nice, why) = aionbd::nice::resolve(cfg.background_nice);
    match why {
        Some(why) => tracing::warn!("{why}"),
        None if nice > 0 => tracing::info!("index work runs at nice {nice}"),
        None => {}
    }
    let cfg = config::Config { background_nice: nice, ..cfg };
    // Credentials and the TLS certificate: built now, rebuilt on SIGHUP.
    let creds = match aionbd::reload::build(&cfg) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            std::process::exit(2);
        }
    };
    let tls = creds.tls.clone();
    let auth_mode = creds.auth.mode.as_str();
    let current = Arc::new(aionbd::reload::Current::new(creds));
    {
        let (cli, tls_on) = (cli.clone(), tls.is_some());
        aionbd::reload::watch(current.clone(), move || {
            let mut errors = Vec::new();
            let env = |k: &str| std::env::var(k).ok();
            let raw = config::gather(&cli, &env, &mut errors);
            let cfg = config::build(&raw, cpus, errors).map_err(CredentialsError::Config)?;
            let next = aionbd::reload::build(&cfg)?;
            if next.tls.is_some() != tls_on {
                return Err(CredentialsError::TlsSwitched);
            }
            Ok(next)
        });
    }
    if let Err(e) = check_memlock(cfg.shards, cfg.io_memory_bytes) {
        tracing::error!("{e}");
        std::process::exit(1);
    }
    // Lock and recognise the data directory (re-laying it out if it was
    // written with other shard or partition counts) before reading it.
    let data_dir = if cfg.persistence.enabled {
        match aionbd::datadir::open(&cfg.data_dir, cfg.shards, cfg.partitions_per_collection) {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::error!("{e}");
                std::process::exit(2);
            }
        }
    } else {
        tracing::warn!("persistence disabled: data lives in memory only and is lost on exit");
        None
    };
    tracing::debug!("start-up: data directory open at {:.2} ms", runtime::ms_since(started));
    // A server killed a moment ago (SIGKILL, a crash, then a supervisor's
    // restart) holds its listening socket until the kernel has torn down its
    // io_uring, which takes well under 100 ms: bind again for up to 1 s
    // before calling the address taken (measured: a restart right after the
    // kill failed, one 0.1 s later did not).
    let mut bound = runtime::listen(cfg.bind);
    let t_bind = Instant::now();
    while matches!(&bound, Err(e) if e.kind() == std::io::ErrorKind::AddrInUse)
        && t_bind.elapsed() < std::time::Duration::from_secs(1)
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
        bound = runtime::listen(cfg.bind);
    }
    let listener = match bound {
        Ok(l) => Arc::new(l),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            tracing::error!("cannot listen on {}: address in use (another process listens there)", cfg.bind);
            std::process::exit(1);
        }
        Err(e) => {
            tracing::error!("cannot listen on {}: {e}", cfg.bind);
            std::process::exit(1);
        }
    };
    let addr = listener.local_addr().unwrap_or(cfg.bind);
    let shutdown = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, shutdown.clone()) {
            tracing::error!("cannot install signal handler: {e}");
            std::process::exit(1);
        }
    }
    // Tell systemd a stop began (the flag above does the stopping).
    if let Ok(mut signals) =
        signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
    {
        let _ = std::thread::Builder::new().name("aionbd-signals".into()).spawn(move || {
            if signals.forever().next().is_some() {
                aionbd::notify::stopping();
            }
        });
    }
    let kernel_name = aionbd_shards::math::distance::kernels().name;
    let shards = cfg.shards;
    let partitions = cfg.partitions_per_collection;
    // While the shards load snapshots and replay logs, a stand-in answers
    // /live (200) and everything else (503) on the same address.
    let responder = if cfg.persistence.enabled {
        match listener.try_clone().and_then(|l| recovering::Responder::start(l, started, tls.clone())) {
            Ok(r) => {
                let scheme = if tls.is_some() { "https" } else { "http" };
                println!("aionbd recovering data; {scheme}://{addr}/live answers, /ready is 503 until done");
                let _ = std::io::stdout().flush();
                Some(r)
            }
            Err(e) => {
                tracing::error!("cannot listen on {addr}: {e}");
                std::process::exit(1);
            }
        }
    } else {
        None
    };
    if let Some(delay) = aionbd::debug_hooks::recovery_delay() {
        std::thread::sleep(delay);
    }
    if let Some(rows) = aionbd::debug_hooks::scan_piece_rows() {
        aionbd_shards::partition::set_scan_piece_rows(rows);
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let shards_root = data_dir.as_ref().map_or_else(|| cfg.data_dir.clone(), |d| d.shards_root.clone());
    // What an operator reads in the journal: version, data, durability.
    let p = &cfg.persistence;
    let durability = if !p.enabled {
        "memory only".to_owned()
    } else if p.wal_sync_on_write {
        format!("data: {}, sync on write", cfg.data_dir.display())
    } else {
        let every = |n: u64, unit: &str| (n > 0).then(|| format!("every {n} {unit}"));
        let when: Vec<String> = [every(p.wal_sync_every_n_writes, "writes"), every(p.wal_sync_interval_seconds, "s")]
            .into_iter()
            .flatten()
            .collect();
        let when = if when.is_empty() { "every 1 s".to_owned() } else { when.join(" or ") };
        format!("data: {}, sync {when}", cfg.data_dir.display())
    };
    tracing::debug!("start-up: listening socket and recovery stand-in at {:.2} ms", runtime::ms_since(started));
    let shared = Arc::new(api::Shared { config: cfg, tls, started, kernel_name, shards_root, current });
    let result = runtime::start(shared, listener.clone(), shutdown.clone());
    if let Some(r) = responder {
        r.stop();
    }
    tracing::debug!("start-up: every shard serves, stand-in stopped at {:.2} ms", runtime::ms_since(started));
    let started = match result {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            std::process::exit(1);
        }
    };
    if started.replayed > 0 {
        tracing::info!("recovered {} write(s) from the write-ahead log", started.replayed);
    }
    let line = format!(
        "aionbd listening on {scheme}://{addr} (version {}, shards: {shards}, partitions per collection: {partitions}, \
         kernels: {kernel_name}, auth: {auth_mode}, {durability})",
        env!("CARGO_PKG_VERSION")
    );
    println!("{line}");
    let _ = std::io::stdout().flush();
    aionbd::notify::ready(line.trim_start_matches("aionbd "));
    started.handles.join_all();
    drop(listener);
    drop(data_dir);
    if shutdown.load(Ordering::Relaxed) {
        tracing::info!("stopped");
    }
}

/// `aionbd restore | check | import | export`: print the outcome, return
/// the exit code (0 done, 1 damage found or the transfer failed, 2 refused).
fn run_tool(cmd: &config::Command) -> i32 {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let done = |line: String| {
        println!("{line}");
        0
    };
    let failed = |code: i32, e: &dyn std::fmt::Display| {
        eprintln!("aionbd: {e}");
        code
    };
    match cmd {
        config::Command::Restore { from, data_dir, shards, partitions_per_collection, force } => {
            let shards = if *shards == 0 { cpus } else { *shards };
            let partitions =
                if *partitions_per_collection == 0 { shards } else { (*partitions_per_collection).min(shards) };
            let o = aionbd::offline::RestoreOptions { from, data_dir, shards, partitions, force: *force };
            aionbd::offline::restore(&o).map_or_else(|e| failed(2, &e), done)
        }
        config::Command::Check { data_dir, backup } => {
            let report = match (data_dir, backup) {
                (_, Some(b)) => aionbd::offline::check_backup(b),
                (Some(d), None) => match aionbd::offline::check_data_dir(d) {
                    Ok(r) => r,
                    Err(e) => return failed(2, &e),
                },
                (None, None) => return failed(2, &"give --data-dir DIR or --backup FILE"),
            };
            for l in &report.lines {
                println!("{l}");
            }
            if report.damaged {
                1
            } else {
                0
            }
        }
        config::Command::Import(a) => aionbd::transfer::import(a).map_or_else(|e| failed(1, &e), done),
        config::Command::Export(a) => aionbd::transfer::export(a).map_or_else(|e| failed(1, &e), done),
    }
}

/// glommio refuses to start below 512 KiB of locked memory (with a panic
/// that blames the kernel) and registers each shard's I/O memory with each of
/// its 3 rings (0.80 MiB per shard at the defaults); below that it runs on
/// unregistered buffers without a word. Say so plainly, before the
/// executors start. Root (with CAP_IPC_LOCK) is not bound by the limit.
fn check_memlock(shards: usize, io_memory: usize) -> Result<(), MemlockTooLow> {
    // SAFETY: getrlimit fills the struct it is given; geteuid has no preconditions.
    let (rl, euid) = unsafe {
        let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut rl);
        (rl, libc::geteuid())
    };
    if euid == 0 || rl.rlim_cur == libc::RLIM_INFINITY {
        return Ok(());
    }
    let have: u64 = rl.rlim_cur;
    let per_shard = RINGS_PER_SHARD * io_memory as u64 + RING_MEMLOCK_PER_SHARD;
    let want = shards as u64 * per_shard;
    if have < MEMLOCK_MIN {
        return Err(MemlockTooLow { have, per_shard, want, shards });
    }
    if have < want {
        tracing::warn!(
            "the locked-memory limit is {} KiB, below the ~{} MiB {shards} shard(s) register for \
             I/O buffers; they will use unregistered buffers (slower). Raise LimitMEMLOCK= / ulimit -l.",
            have / 1024,
            want.div_ceil(1 << 20)
        );
    }
    Ok(())
}

/// RLIMIT_MEMLOCK is below glommio's floor: bytes allowed, and about what
/// a shard and all `shards` register.
#[derive(Debug)]
struct MemlockTooLow {
    have: u64,
    per_shard: u64,
    want: u64,
    shards: usize,
}

impl std::fmt::Display for MemlockTooLow {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "the locked-memory limit is {} KiB; io_uring needs at least {} KiB (and about {} KiB per shard, {} MiB \
             for {}): raise it (systemd: LimitMEMLOCK=; shell: ulimit -l; docker: --ulimit memlock=)",
            self.have / 1024,
            MEMLOCK_MIN / 1024,
            self.per_shard.div_ceil(1024),
            self.want.div_ceil(1 << 20),
            self.shards
        )
    }
}

impl std::error::Error for MemlockTooLow {}

/// glommio's floor for RLIMIT_MEMLOCK.
const MEMLOCK_MIN: u64 = 512 << 10;
/// A shard registers its `server.io_memory_bytes` with each of its rings
/// (main, latency, poll), plus the rings' own memory (measured at 2 MiB of
/// I/O memory: 6,348,800 bytes = 3 x 2 MiB + 57,344; deploy/README.md).
const RINGS_PER_SHARD: u64 = 3;
const RING_MEMLOCK_PER_SHARD: u64 = 57_344;
