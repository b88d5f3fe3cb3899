//! The HTTP API of API.md: one [`Api`] per shard implements the HTTP layer's
//! `Service`. It assigns the request id, applies the concurrency cap and the
//! request timeout, routes, and renders every error as `{"code","message"}`.
//! Handlers are the dispatcher role: they route work to the owning shards
//! through the [`Node`] and merge the answers.

mod backup;
pub mod body;
mod collections;
mod error;
mod points;
mod routes;
mod search;
mod system;
pub mod vectors;

use crate::auth::{Principal, Scope};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::node::Node;
use aionbd_http::{HttpError, Request, Response, Service};
use aionbd_shards::placement::{Placement, ShardId};
pub use error::{ApiError, ErrorCode};
use glommio::sync::Semaphore;
use routes::{Class, Matched, RouteId};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Process-wide facts every shard's API reads (immutable after start).
pub struct Shared {
    pub config: Config,
    /// HTTPS configuration; `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub started: Instant,
    pub kernel_name: &'static str,
    /// Credentials and the TLS certificate, reloaded on SIGHUP.
    pub current: Arc<crate::reload::Current>,
    /// Where the shard directories of the data directory's layout are.
    pub shards_root: std::path::PathBuf,
}

pub struct Api {
    node: Rc<Node>,
    shared: Arc<Shared>,
    placement: Placement,
    /// This shard's share of `max_concurrency`.
    permits: Rc<Semaphore>,
    /// JWTs this shard verified, until they expire.
    tokens: crate::auth::TokenCache,
    /// This shard's view of the credentials (taken again after a reload).
    creds: crate::reload::Local,
    /// Failed authentication per source address, this minute.
    auth_failures: crate::auth::FailureBudget,
}

/// A successful answer body.
pub enum Body {
    Json(Vec<u8>),
    Text(String),
    Yaml(&'static str),
    Html(&'static str),
    /// A streamed body (sent chunked), with its content type and, for a
    /// download, the file name to suggest.
    Stream(&'static str, Option<String>, aionbd_http::BodyStream),
}

/// The status page (`GET /ui`), built into the binary: one file, no outside assets.
pub const UI: &str = include_str!("../../ui/index.html");

/// The API's OpenAPI description, built into the binary.
pub const OPENAPI: &str = include_str!("../../docs/openapi.yaml");

pub type ApiResult = Result<Body, ApiError>;

pub fn json<T: serde::Serialize>(v: &T) -> ApiResult {
    serde_json::to_vec(v).map(Body::Json).map_err(|e| ApiError::internal(format!("cannot encode response: {e}")))
}

impl Api {
    pub fn new(node: Rc<Node>, shared: Arc<Shared>) -> Self {
        let cfg = &shared.config;
        let placement = Placement::new(cfg.shards, cfg.partitions_per_collection);
        let per_shard = cfg.max_concurrency.div_ceil(cfg.shards).max(1);
        let creds = crate::reload::Local::new(&shared.current);
        Api {
            node,
            placement,
            permits: Rc::new(Semaphore::new(per_shard as u64)),
            tokens: Default::default(),
            auth_failures: Default::default(),
            creds,
            shared,
        }
    }

    fn cfg(&self) -> &Config {
        &self.shared.config
    }

    /// Run one operation on one shard and return its reply.
    async fn call<Q: aionbd_shards::ops::Op>(&self, to: ShardId, op: Q) -> Result<Q::Reply, ApiError> {
        Ok(self.node.call(to, op).wait().await?)
    }

    /// Run an operation on several shards; the first error wins.
    async fn scatter<Q: aionbd_shards::ops::Op>(
        &self,
        to: &[ShardId],
        op: impl Fn() -> Q,
    ) -> Result<Vec<Q::Reply>, ApiError> {
        let answers = self.node.scatter(to, op).await;
        let mut out = Vec::with_capacity(answers.len());
        for a in answers {
            out.push(a?);
        }
        Ok(out)
    }

    fn all_shards(&self) -> Vec<ShardId> {
        (0..self.node.n_shards()).collect()
    }

    /// Run the handler of a resolved route. Collection names are made
    /// internal here (`tenant::name` with auth on), and put back to what
    /// the caller sees in error messages.
    async fn route(&self, req: &mut Request, m: &Matched<'_>, who: &Principal) -> ApiResult {
        let tenant = who.tenant.as_deref();
        let coll = m.name.map(|raw| collection_name(raw).map(|v| (internal_name(tenant, &v), v))).transpose()?;
        let name = coll.as_ref().map_or("", |(internal, _)| internal.as_str());
        let id = m.point.unwrap_or("");
        let result = match m.id {
            RouteId::Live => self.live(),
            RouteId::Ready => self.ready().await,
            RouteId::Metrics => self.metrics_json().await,
            RouteId::MetricsPrometheus => self.metrics_prometheus(req.query.as_deref()).await,
            RouteId::OpenApi => Ok(Body::Yaml(OPENAPI)),
            RouteId::Ui => Ok(Body::Html(UI)),
            RouteId::Distance => self.distance(req),
            RouteId::ListCollections => self.list_collections(tenant).await,
            RouteId::CreateCollection => self.create_collection(req, tenant).await,
            RouteId::GetCollection => self.get_collection(name).await,
            RouteId::DeleteCollection => self.delete_collection(name).await,
            RouteId::ListPoints => self.list_points(name, req.query.as_deref()).await,
            RouteId::UpsertBatch => self.upsert_batch(name, req).await,
            RouteId::Count => self.count(name, req).await,
            RouteId::PayloadSet => self.payload_set(name, req).await,
            RouteId::PayloadDelete => self.payload_delete(name, req).await,
            RouteId::GetPoint => self.get_point(name, id).await,
            RouteId::UpsertPoint => self.upsert_point(name, id, req).await,
            RouteId::DeletePoint => self.delete_point(name, id).await,
            RouteId::SearchTop1 => self.search_top1(name, req).await,
            RouteId::SearchTopK => self.search_topk(name, req).await,
            RouteId::SearchBatch => self.search_batch(name, req).await,
            RouteId::Export => self.export(name).await,
            RouteId::Backup => self.backup_stream(req.query.as_deref(), who).await,
            RouteId::CreateBackup => self.create_backup(req.query.as_deref(), who).await,
            RouteId::ListBackups => self.list_backups(),
            RouteId::GetBackup => self.get_backup(id).await,
            RouteId::DeleteBackup => self.delete_backup(id).await,
        };
        match (result, &coll) {
            (Err(mut e), Some((internal, visible))) if internal != visible => {
                e.message = e.message.replace(internal.as_str(), visible);
                Err(e)
            }
            (r, _) => r,
        }
    }

    /// Who is calling (API.md §8): 401 with the reason class, counted in
    /// `auth_failures_*_total`. With `security.auth_open_health`, the probes
    /// answer anyone.
    fn authenticate(&self, req: &Request, class: Option<Class>) -> Result<Principal, Response> {
        let creds = self.creds.get(&self.shared.current);
        let auth = &creds.auth;
        if class == Some(Class::Static)
            || (auth.enabled() && self.cfg().auth_open_health && class == Some(Class::Health))
        {
            return Ok(Principal { tenant: None, scope: Scope::Read });
        }
        let limit = self.cfg().auth_failure_limit_per_minute;
        let now = crate::clock::unix_seconds();
        if let Some(retry) = req.peer.and_then(|ip| self.auth_failures.exhausted(ip, limit, now)) {
            Metrics::add(&self.node.metrics.rate_limit_rejections_total, 1);
            let e = ApiError::new(
                ErrorCode::ResourceExhausted,
                format!("too many failed authentication attempts from this address; retry in {retry} s"),
            );
            return Err(self
                .respond(e.status(), Body::Json(e.body()), request_id(req))
                .with_header("retry-after", retry.to_string()));
        }
        auth.authenticate_cached(req.header("x-api-key"), req.header("authorization"), Some(&self.tokens)).map_err(
            |f| {
                if let Some(ip) = req.peer {
                    self.auth_failures.count(ip, now);
                }
                Metrics::add(&self.node.metrics.auth_failures[f.index()], 1);
                let e = ApiError::new(ErrorCode::Unauthorized, f.message(auth.mode));
                self.respond(e.status(), Body::Json(e.body()), request_id(req))
                    .with_header("www-authenticate", "Bearer")
            },
        )
    }

    /// Scopes (API.md §8): write routes need `write` or `admin`; with
    /// `security.auth_metrics_admin`, the metrics routes need `admin`.
    fn authorize(&self, class: Class, who: &Principal) -> Result<(), ApiError> {
        let need = match class {
            Class::Write => Scope::Write,
            Class::Admin => Scope::Admin,
            Class::Metrics if self.creds.get(&self.shared.current).auth.enabled() && self.cfg().auth_metrics_admin => {
                Scope::Admin
            }
            _ => Scope::Read,
        };
        if who.scope >= need {
            return Ok(());
        }
        Metrics::add(&self.node.metrics.auth_forbidden_total, 1);
        Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("this credential's scope ({:?}) does not allow this route (needs {:?})", who.scope, need)
                .to_lowercase(),
        ))
    }

    /// The rate limit (API.md §8): count this request in the current UTC
    /// minute across shards, or answer 429 with `Retry-After`.
    fn admit_rate(&self, who: &Principal, request_id: &str) -> Result<(), Response> {
        let rate = &self.node.rate;
        if rate.limit() == 0 {
            return Ok(());
        }
        let tenant = who.tenant.clone().unwrap_or_else(|| PUBLIC.clone());
        let now = crate::clock::unix_seconds();
        match rate.admit(&tenant, now) {
            Ok((minute, count)) => {
                self.node.router().report_rate(&tenant, minute, count);
                Ok(())
            }
            Err(retry) => {
                crate::metrics::Metrics::add(&self.node.metrics.rate_limit_rejections_total, 1);
                let e = ApiError::new(
                    ErrorCode::ResourceExhausted,
                    format!("rate limit of {} requests per minute reached; retry in {retry} s", rate.limit()),
                );
                Err(self
                    .respond(e.status(), Body::Json(e.body()), request_id.to_owned())
                    .with_header("retry-after", retry.to_string()))
            }
        }
    }

    fn respond(&self, status: u16, body: Body, request_id: String) -> Response {
        if let Body::Stream(ctype, file, stream) = body {
            let resp = Response::streamed(status, ctype, stream)
                .with_header("x-request-id", request_id)
                .with_header("date", crate::clock::http_date());
            return match file {
                Some(f) => resp.with_header("content-disposition", format!("attachment; filename=\"{f}\"")),
                None => resp,
            };
        }
        let (ctype, bytes) = match body {
            Body::Json(b) => ("application/json", b),
            Body::Text(t) => ("text/plain; version=0.0.4; charset=utf-8", t.into_bytes()),
            Body::Yaml(y) => ("application/yaml", y.as_bytes().to_vec()),
            Body::Html(h) => ("text/html; charset=utf-8", h.as_bytes().to_vec()),
            Body::Stream(..) => unreachable!("handled above"),
        };
        Response::new(status, ctype, bytes)
            .with_header("x-request-id", request_id)
            .with_header("date", crate::clock::http_date())
    }
}

pub(super) fn percent_decode(s: &str) -> Result<String, ApiError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(b) => out.push(b),
                None => return Err(ApiError::invalid(format!("bad percent-encoding in path segment '{s}'"))),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ApiError::invalid(format!("path segment '{s}' is not UTF-8")))
}

/// Require a JSON content type, then parse the body.
fn json_body<T: serde::de::DeserializeOwned>(req: &mut Request) -> Result<T, ApiError> {
    check_json(req)?;
    body::parse(&mut req.body)
}

/// `json_body` for a body with vectors (`body::parse_vectors`).
fn json_vectors_body<T: vectors::Vectors>(req: &mut Request) -> Result<T, ApiError> {
    check_json(req)?;
    body::parse_vectors(&mut req.body)
}

/// A JSON content type and a body, or the error.
fn check_json(req: &Request) -> Result<(), ApiError> {
    let ctype = req.header("content-type").unwrap_or("");
    let essence = ctype.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::invalid(if ctype.is_empty() {
            "missing content-type: send JSON with 'content-type: application/json'".to_owned()
        } else {
            format!("content-type '{ctype}' is not supported: send 'application/json'")
        }));
    }
    if req.body.is_empty() {
        return Err(ApiError::invalid("request body is empty: expected a JSON object"));
    }
    Ok(())
}

/// The rate-limit bucket of callers without a tenant (auth off).
static PUBLIC: std::sync::LazyLock<std::sync::Arc<str>> = std::sync::LazyLock::new(|| "public".into());

use aionbd_shards::placement::TENANT_SEP;

/// The name a collection is stored under: `tenant::name` with auth on,
/// the name itself with auth off.
fn internal_name(tenant: Option<&str>, visible: &str) -> String {
    match tenant {
        Some(t) => format!("{t}{TENANT_SEP}{visible}"),
        None => visible.to_owned(),
    }
}

/// The name a caller sees for an internal name.
pub(crate) fn visible_name(internal: &str) -> &str {
    internal.split_once(TENANT_SEP).map_or(internal, |(_, v)| v)
}

/// Whether a collection belongs to `tenant` (`None`: made with auth off).
fn in_namespace(internal: &str, tenant: Option<&str>) -> bool {
    match (aionbd_shards::placement::tenant_of(internal), tenant) {
        (Some(t), Some(want)) => t == want,
        (None, None) => true,
        _ => false,
    }
}

/// Validate and trim a collection name (API.md §4).
fn collection_name(raw: &str) -> Result<String, ApiError> {
    let name = raw.trim();
    if name.is_empty() || name.len() > 128 {
        return Err(ApiError::invalid(format!("collection name must be 1 to 128 bytes, got {}", name.len())));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        return Err(ApiError::invalid(format!("collection name '{name}' may only contain A-Z a-z 0-9 - _ .")));
    }
    if name.contains("..") || name == "." {
        // `.` and `..` are path segments URL clients rewrite away.
        return Err(ApiError::invalid(format!("collection name '{name}' must not be '.' or contain '..'")));
    }
    Ok(name.to_owned())
}

fn point_id(raw: &str) -> Result<u64, ApiError> {
    raw.parse::<u64>().map_err(|_| ApiError::invalid(format!("point id '{raw}' is not an unsigned 64-bit integer")))
}

/// A request id for a request that brought none: a version-4 UUID from a
/// per-thread splitmix64 stream seeded once from the OS (issue 21: a fresh
/// `Uuid::new_v4` was a `getrandom` syscall per request). Ids correlate
/// logs; nothing relies on their being unguessable.
fn fresh_request_id() -> String {
    thread_local! {
        static STATE: std::cell::Cell<u64> = std::cell::Cell::new(uuid::Uuid::new_v4().as_u64_pair().0);
    }
    STATE.with(|state| {
        let mut s = state.get();
        let (hi, lo) = (aionbd_shards::math::rng::splitmix64(&mut s), aionbd_shards::math::rng::splitmix64(&mut s));
        state.set(s);
        let bytes = ((u128::from(hi) << 64) | u128::from(lo)).to_be_bytes();
        uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
    })
}

fn request_id(req: &Request) -> String {
    match req.header("x-request-id") {
        Some(v) if !v.is_empty() && v.len() <= 200 && v.bytes().all(|b| b.is_ascii_graphic()) => v.to_owned(),
        _ => fresh_request_id(),
    }
}

/// The API as one connection sees it: every request carries the peer's
/// address (for the failed-authentication budget).
pub struct ForPeer<'a> {
    pub api: &'a Api,
    pub peer: Option<std::net::IpAddr>,
}

impl Service for ForPeer<'_> {
    async fn call(&self, mut req: Request) -> Response {
        req.peer = self.peer;
        Service::call(self.api, req).await
    }

    fn error(&self, err: &HttpError) -> Response {
        Service::error(self.api, err)
    }
}

impl Service for Api {
    async fn call(&self, req: Request) -> Response {
        let origin = self.cors_origin(&req);
        let resp = if req.method == "OPTIONS" { self.options(&req, origin.is_some()) } else { self.answer(req).await };
        match origin {
            Some(o) => resp
                .with_header("access-control-allow-origin", o)
                .with_header("vary", "origin")
                .with_header("access-control-expose-headers", "x-request-id, retry-after, content-disposition"),
            None => resp,
        }
    }

    fn error(&self, err: &HttpError) -> Response {
        let e = error::from_http(err);
        let metrics = &self.node.metrics;
        metrics.request_started();
        metrics.request_finished(e.status(), 0);
        self.respond(e.status(), Body::Json(e.body()), fresh_request_id())
    }
}

impl Api {
    /// The `Access-Control-Allow-Origin` value for a request from a browser
    /// on an allowed origin (`security.cors_allowed_origins`).
    fn cors_origin(&self, req: &Request) -> Option<String> {
        let origin = req.header("origin")?;
        let allowed = &self.cfg().cors_allowed_origins;
        if allowed.iter().any(|a| a == "*") {
            Some("*".to_owned())
        } else {
            allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)).then(|| origin.to_owned())
        }
    }

    /// `OPTIONS`: the path's methods in `Allow`, before authentication (a
    /// browser's CORS preflight carries no credentials); for an allowed
    /// origin, what it may send. 404 for a path no route has.
    fn options(&self, req: &Request, cors: bool) -> Response {
        let metrics = &self.node.metrics;
        metrics.request_started();
        let segments: Vec<String> =
            req.path.split('/').skip(1).map(|s| percent_decode(s).unwrap_or_default()).collect();
        let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
        let resp = match routes::allowed(&seg) {
            Some(allow) => {
                let mut methods = allow.to_owned();
                if allow.contains("GET") {
                    methods.push_str(", HEAD");
                }
                methods.push_str(", OPTIONS");
                let resp = Response::new(200, "text/plain; charset=utf-8", Vec::new())
                    .with_header("x-request-id", request_id(req))
                    .with_header("date", crate::clock::http_date())
                    .with_header("allow", methods.clone());
                if cors {
                    resp.with_header("access-control-allow-methods", methods)
                        .with_header(
                            "access-control-allow-headers",
                            "content-type, x-api-key, authorization, x-request-id",
                        )
                        .with_header("access-control-max-age", "600")
                } else {
                    resp
                }
            }
            None => {
                let e = ApiError::not_found(format!("no route for OPTIONS {}", req.path));
                self.respond(e.status(), Body::Json(e.body()), request_id(req))
            }
        };
        metrics.request_finished(resp.status, 0);
        resp
    }

    /// Every method but `OPTIONS`.
    async fn answer(&self, mut req: Request) -> Response {
        let t0 = Instant::now();
        let metrics = self.node.metrics.clone();
        metrics.request_started();
        let rid = request_id(&req);
        // Order (API.md §2): auth 401, rate limit 429, routing 404/405,
        // scope 403, then the handler.
        let segments: Result<Vec<String>, ApiError> = req.path.split('/').skip(1).map(percent_decode).collect();
        let seg: Vec<&str> = segments.as_ref().map_or_else(|_| Vec::new(), |v| v.iter().map(String::as_str).collect());
        let resolved = segments.as_ref().map_err(Clone::clone).and_then(|_| routes::resolve(&req.method, &seg));
        let who = match self.authenticate(&req, resolved.as_ref().ok().map(|m| m.class)) {
            Ok(p) => p,
            Err(resp) => {
                metrics.request_finished(resp.status, t0.elapsed().as_micros() as u64);
                return resp;
            }
        };
        if let Err(resp) = self.admit_rate(&who, &rid) {
            if let Some(t) = &who.tenant {
                metrics.tenant_request(t, resp.status);
            }
            metrics.request_finished(resp.status, t0.elapsed().as_micros() as u64);
            return resp;
        }
        // A backup kept on the server answers when it is written: no deadline.
        let timeout = match &resolved {
            Ok(m) if m.id == RouteId::CreateBackup => Duration::from_secs(365 * 24 * 3600),
            _ => Duration::from_millis(self.cfg().request_timeout_ms),
        };
        let read_only = matches!(&resolved, Ok(m) if m.class != Class::Write);
        let route_class = resolved.as_ref().ok().map(routes::latency_class);
        let work = async {
            let m = resolved?;
            self.authorize(m.class, &who)?;
            let _permit = self
                .permits
                .acquire_permit(1)
                .await
                .map_err(|_| ApiError::new(ErrorCode::NotReady, "shutting down"))?;
            self.route(&mut req, &m, &who).await
        };
        let result = match glommio::timer::timeout(timeout, async { Ok(work.await) }).await {
            // A read that finished past the deadline (a long synchronous
            // scan gives the timer no chance to fire) still answers 408, as
            // the contract says; a write reports what really happened.
            Ok(_) if read_only && t0.elapsed() > timeout => Err(ApiError::timeout()),
            Ok(r) => r,
            Err(_) => Err(ApiError::timeout()),
        };
        let resp = match result {
            Ok(body) => self.respond(200, body, rid),
            Err(e) => {
                if let Some(q) = e.quota {
                    Metrics::add(&self.node.metrics.quota_rejections[q as usize], 1);
                }
                let resp = self.respond(e.status(), Body::Json(e.body()), rid);
                match e.allow {
                    Some(allow) => resp.with_header("allow", allow.to_owned()),
                    None => resp,
                }
            }
        };
        if let Some(t) = &who.tenant {
            metrics.tenant_request(t, resp.status);
        }
        let us = t0.elapsed().as_micros() as u64;
        if let Some(class) = route_class {
            metrics.record_class(class, us);
        }
        metrics.request_finished(resp.status, us);
        resp
    }
}
