//! Credentials and the TLS certificate, reloaded on SIGHUP without a
//! restart and without dropping connections.
//!
//! A plain thread waits for SIGHUP, reads the configuration again (the
//! `--config` file, and the key, JWKS, PEM and certificate files it names;
//! environment variables are the process's and stay as they were) and, if
//! everything builds, publishes the new set under a new generation number.
//! Shards compare that number (one relaxed atomic load per request) with
//! the one they hold and take the new set only when it changed, so the
//! request path takes no lock. A set that does not build leaves the old one
//! in force; why is printed on stderr and counted in `/metrics`.

use crate::auth::Auth;
use crate::tls::TlsError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What a reload replaces.
pub struct Credentials {
    pub auth: Auth,
    /// HTTPS configuration; `None`: plain HTTP (TLS cannot be switched on
    /// or off by a reload, only its certificate changed).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// The current set and its generation, shared by every shard.
pub struct Current {
    generation: AtomicU64,
    set: Mutex<Arc<Credentials>>,
    pub reloads: AtomicU64,
    pub failures: AtomicU64,
}

impl Current {
    pub fn new(first: Credentials) -> Current {
        Current {
            generation: AtomicU64::new(1),
            set: Mutex::new(Arc::new(first)),
            reloads: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current set (takes the lock: call only when the generation moved).
    pub fn get(&self) -> (u64, Arc<Credentials>) {
        let set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        (self.generation(), set.clone())
    }

    pub fn publish(&self, next: Credentials) {
        let mut set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        *set = Arc::new(next);
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.reloads.fetch_add(1, Ordering::Relaxed);
    }

    pub fn failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }
}

/// A shard's view: the set it last took and its generation (no lock unless
/// a reload happened since).
pub struct Local {
    seen: std::cell::RefCell<(u64, Arc<Credentials>)>,
}

impl Local {
    pub fn new(current: &Current) -> Local {
        Local { seen: std::cell::RefCell::new(current.get()) }
    }

    pub fn get(&self, current: &Current) -> Arc<Credentials> {
        if current.generation() != self.seen.borrow().0 {
            *self.seen.borrow_mut() = current.get();
        }
        self.seen.borrow().1.clone()
    }
}

/// Why a set of credentials could not be built.
#[derive(Debug)]
pub enum CredentialsError {
    /// The configuration read again has problems (each one's message).
    Config(Vec<String>),
    /// The auth settings have problems (each one's message).
    Auth(Vec<String>),
    Tls(TlsError),
    /// A reload would turn TLS on or off.
    TlsSwitched,
}

impl std::fmt::Display for CredentialsError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            CredentialsError::Config(problems) | CredentialsError::Auth(problems) => f.write_str(&problems.join("; ")),
            CredentialsError::Tls(e) => write!(f, "{e}"),
            CredentialsError::TlsSwitched => {
                f.write_str("TLS cannot be turned on or off by a reload; restart the server")
            }
        }
    }
}

impl std::error::Error for CredentialsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CredentialsError::Tls(e) => Some(e),
            CredentialsError::Config(_) | CredentialsError::Auth(_) | CredentialsError::TlsSwitched => None,
        }
    }
}

/// Build the credentials a configuration names.
pub fn build(cfg: &crate::config::Config) -> Result<Credentials, CredentialsError> {
    let auth = Auth::build(&cfg.auth).map_err(CredentialsError::Auth)?;
    let tls = match &cfg.tls {
        Some((cert, key)) => Some(crate::tls::server_config(cert, key).map_err(CredentialsError::Tls)?),
        None => None,
    };
    Ok(Credentials { auth, tls })
}

/// Wait for SIGHUP on a thread of its own and reload with `load` (which
/// reads the configuration again) each time.
pub fn watch(current: Arc<Current>, load: impl Fn() -> Result<Credentials, CredentialsError> + Send + 'static) {
    let mut signals = match signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot watch SIGHUP (credentials will not reload): {e}");
            return;
        }
    };
    let spawned = std::thread::Builder::new().name("aionbd-reload".into()).spawn(move || {
        for _ in signals.forever() {
            match load() {
                Ok(next) => {
                    let what = format!(
                        "auth {}, {}",
                        next.auth.mode.as_str(),
                        if next.tls.is_some() { "TLS" } else { "no TLS" }
                    );
                    current.publish(next);
                    tracing::info!("SIGHUP: credentials reloaded ({what})");
                }
                Err(e) => {
                    current.failed();
                    tracing::error!("SIGHUP: reload refused, the previous credentials stay in force: {e}");
                }
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!("cannot start the reload thread: {e}");
    }
}
