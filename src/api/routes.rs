//! The one table of routes: method + path pattern -> route and class. The
//! dispatcher, the 405 `Allow` header, what auth scopes allow (API.md §8)
//! and the OpenAPI check all read this table; nothing decides a route by
//! looking at parts of the path.

use super::{ApiError, ErrorCode};

/// What a route does, for auth scopes and timeouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// `/live`, `/ready`: probes (may be left open by a setting).
    Health,
    /// `/metrics`, `/metrics/prometheus` (may be restricted to `admin`).
    Metrics,
    /// Reads, searches, counts, `/distance`: any scope.
    Read,
    /// The write routes of API.md §8: scope `write` or `admin`.
    Write,
    /// Server-side backups (kept on the server's disk): scope `admin`.
    Admin,
    /// The status page's static HTML (no data in it): open to anyone, as a
    /// browser cannot add credentials to a page load; the API calls it
    /// makes carry them.
    Static,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteId {
    Live,
    Ready,
    Metrics,
    MetricsPrometheus,
    OpenApi,
    Ui,
    Distance,
    ListCollections,
    CreateCollection,
    GetCollection,
    DeleteCollection,
    ListPoints,
    UpsertBatch,
    Count,
    PayloadSet,
    PayloadDelete,
    GetPoint,
    UpsertPoint,
    DeletePoint,
    SearchTop1,
    SearchTopK,
    SearchBatch,
    Export,
    Backup,
    CreateBackup,
    ListBackups,
    GetBackup,
    DeleteBackup,
}

pub struct RouteDef {
    pub method: &'static str,
    /// Literal segments, `{name}` (a collection), `{id}` (a point id) and
    /// `{backup}` (a stored backup's name; captured like `{id}`).
    pub path: &'static str,
    pub id: RouteId,
    pub class: Class,
}

const fn r(method: &'static str, path: &'static str, id: RouteId, class: Class) -> RouteDef {
    RouteDef { method, path, id, class }
}

use Class::{Admin, Health, Read, Write};
use RouteId::*;

pub const ROUTES: &[RouteDef] = &[
    r("GET", "/live", Live, Health),
    r("GET", "/ready", Ready, Health),
    r("GET", "/metrics", RouteId::Metrics, Class::Metrics),
    r("GET", "/metrics/prometheus", MetricsPrometheus, Class::Metrics),
    r("GET", "/openapi.yaml", OpenApi, Read),
    r("GET", "/ui", Ui, Class::Static),
    r("POST", "/distance", Distance, Read),
    r("GET", "/collections", ListCollections, Read),
    r("POST", "/collections", CreateCollection, Write),
    r("GET", "/collections/{name}", GetCollection, Read),
    r("DELETE", "/collections/{name}", DeleteCollection, Write),
    r("GET", "/collections/{name}/points", ListPoints, Read),
    r("POST", "/collections/{name}/points", UpsertBatch, Write),
    r("POST", "/collections/{name}/points/count", Count, Read),
    r("POST", "/collections/{name}/points/payload/set", PayloadSet, Write),
    r("POST", "/collections/{name}/points/payload/delete", PayloadDelete, Write),
    r("GET", "/collections/{name}/points/{id}", GetPoint, Read),
    r("PUT", "/collections/{name}/points/{id}", UpsertPoint, Write),
    r("DELETE", "/collections/{name}/points/{id}", DeletePoint, Write),
    r("POST", "/collections/{name}/search", SearchTop1, Read),
    r("POST", "/collections/{name}/search/topk", SearchTopK, Read),
    r("POST", "/collections/{name}/search/topk/batch", SearchBatch, Read),
    r("GET", "/collections/{name}/export", Export, Read),
    r("GET", "/backup", Backup, Read),
    r("POST", "/backups", CreateBackup, Admin),
    r("GET", "/backups", ListBackups, Admin),
    r("GET", "/backups/{backup}", GetBackup, Admin),
    r("DELETE", "/backups/{backup}", DeleteBackup, Admin),
];

/// The latency class of a routed request (`metrics::ROUTE_CLASSES` index):
/// search, write, read, admin.
pub fn latency_class(m: &Matched) -> usize {
    match (m.id, m.class) {
        (RouteId::SearchTop1 | RouteId::SearchTopK | RouteId::SearchBatch, _) => 0,
        (_, Class::Write) => 1,
        (_, Class::Read) => 2,
        _ => 3,
    }
}

/// A request matched to the table, with the path's parameters.
#[derive(Debug, PartialEq, Eq)]
pub struct Matched<'a> {
    pub id: RouteId,
    pub class: Class,
    pub name: Option<&'a str>,
    pub point: Option<&'a str>,
}

/// The parameters of `segments` under `pattern`, if it matches. A literal
/// segment wins over a parameter (`/points/count` is not point `count`).
fn capture<'a>(pattern: &str, segments: &[&'a str]) -> Option<(Option<&'a str>, Option<&'a str>)> {
    let parts: Vec<&str> = pattern.split('/').skip(1).collect();
    if parts.len() != segments.len() {
        return None;
    }
    let (mut name, mut point) = (None, None);
    for (p, s) in parts.iter().zip(segments) {
        match *p {
            "{name}" => name = Some(*s),
            "{id}" | "{backup}" => point = Some(*s),
            lit if lit == *s => {}
            _ => return None,
        }
    }
    Some((name, point))
}

/// How many literal segments a pattern has (more: more specific).
fn literals(pattern: &str) -> usize {
    pattern.split('/').filter(|p| !p.is_empty() && !p.starts_with('{')).count()
}

/// The route for `method` on `segments` (decoded path segments): 404 for a
/// path no route has, 405 (with `Allow`) for a path without this method.
pub fn resolve<'a>(method: &str, segments: &[&'a str]) -> Result<Matched<'a>, ApiError> {
    // HEAD is GET without the body (the connection loop drops it).
    let method = if method == "HEAD" { "GET" } else { method };
    let mut best: Option<(usize, &RouteDef, Option<&'a str>, Option<&'a str>)> = None;
    let mut allowed: Vec<&'static str> = Vec::new();
    let mut path_literals = 0;
    for def in ROUTES {
        let Some((name, point)) = capture(def.path, segments) else { continue };
        let lits = literals(def.path);
        // Only the most specific pattern that matches the path counts.
        if lits > path_literals {
            path_literals = lits;
            allowed.clear();
            best = None;
        } else if lits < path_literals {
            continue;
        }
        allowed.push(def.method);
        if def.method == method {
            best = Some((lits, def, name, point));
        }
    }
    match best {
        Some((_, def, name, point)) => Ok(Matched { id: def.id, class: def.class, name, point }),
        None if allowed.is_empty() => {
            Err(ApiError::not_found(format!("no route for {method} /{}", segments.join("/"))))
        }
        None => {
            let allow = allowed_header(&allowed);
            Err(ApiError {
                allow: Some(allow),
                ..ApiError::new(
                    ErrorCode::MethodNotAllowed,
                    format!("method {method} is not allowed on /{}; allowed: {allow}", segments.join("/")),
                )
            })
        }
    }
}

/// The methods a path has, as an `Allow` value (for `OPTIONS`); `None`
/// for a path no route has.
pub fn allowed(segments: &[&str]) -> Option<&'static str> {
    match resolve("OPTIONS", segments) {
        Err(ApiError { allow: Some(allow), .. }) => Some(allow),
        _ => None,
    }
}

/// The `Allow` value for a set of methods (a fixed string per set, so the
/// error can hold a `&'static str`).
fn allowed_header(methods: &[&str]) -> &'static str {
    let has = |m| methods.contains(&m);
    match (has("GET"), has("POST"), has("PUT"), has("DELETE")) {
        (true, false, false, false) => "GET",
        (false, true, false, false) => "POST",
        (true, true, false, false) => "GET, POST",
        (true, false, false, true) => "GET, DELETE",
        (true, false, true, true) => "GET, PUT, DELETE",
        _ => "GET, POST, PUT, DELETE",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m<'a>(method: &str, path: &'a str) -> Result<Matched<'a>, ApiError> {
        let segs: Vec<&str> = path.split('/').skip(1).collect();
        resolve(method, &segs)
    }

    #[test]
    fn every_route_resolves_to_itself_and_literals_beat_parameters() {
        for def in ROUTES {
            let path = def.path.replace("{name}", "c").replace("{id}", "7").replace("{backup}", "b");
            let got = m(def.method, Box::leak(path.into_boxed_str())).unwrap();
            assert_eq!((got.id, got.class), (def.id, def.class), "{} {}", def.method, def.path);
        }
        assert_eq!(m("POST", "/collections/c/points/count").unwrap().id, Count);
        assert_eq!(m("GET", "/collections/count/points/7").unwrap().name, Some("count"));
        // A collection named like a route word is still a collection.
        let w = m("POST", "/collections/search-log/points").unwrap();
        assert_eq!((w.id, w.class, w.name), (UpsertBatch, Write, Some("search-log")));
        let s = m("POST", "/collections/search/search").unwrap();
        assert_eq!((s.id, s.class, s.name), (SearchTop1, Read, Some("search")));
    }

    /// docs/openapi.yaml (served at /openapi.yaml) describes exactly the
    /// routes of this table: every path and method, no more.
    #[test]
    fn the_openapi_description_lists_the_same_routes() {
        let mut described = std::collections::BTreeSet::new();
        let mut path: Option<&str> = None;
        for line in super::super::OPENAPI.lines() {
            if let Some(p) = line.strip_prefix("  /").and_then(|l| l.strip_suffix(':')) {
                path = Some(p);
            } else if !line.starts_with("  ") && !line.trim().is_empty() {
                path = None;
            } else if let (Some(p), Some(m)) = (path, line.strip_prefix("    ").and_then(|l| l.strip_suffix(':'))) {
                if ["get", "post", "put", "delete", "patch"].contains(&m) {
                    described.insert((m.to_uppercase(), format!("/{p}")));
                }
            }
        }
        let table: std::collections::BTreeSet<_> =
            ROUTES.iter().map(|d| (d.method.to_owned(), d.path.to_owned())).collect();
        assert_eq!(described, table);
    }

    #[test]
    fn unknown_paths_are_404_and_wrong_methods_405_with_allow() {
        assert_eq!(m("GET", "/nope").unwrap_err().status(), 404);
        assert_eq!(m("GET", "/collections/c/points/7/x").unwrap_err().status(), 404);
        let e = m("PATCH", "/collections").unwrap_err();
        assert_eq!((e.status(), e.allow), (405, Some("GET, POST")));
        assert_eq!(m("POST", "/collections/c/points/7").unwrap_err().allow, Some("GET, PUT, DELETE"));
        assert_eq!(m("GET", "/collections/c/points/count").unwrap_err().allow, Some("POST"));
        assert_eq!(m("DELETE", "/live").unwrap_err().allow, Some("GET"));
        // HEAD is answered where GET is; OPTIONS lists a path's methods.
        assert_eq!(m("HEAD", "/collections/c").unwrap().id, GetCollection);
        assert_eq!(m("HEAD", "/collections/c/search").unwrap_err().status(), 405);
        assert_eq!(allowed(&["collections"]), Some("GET, POST"));
        assert_eq!(allowed(&["nope"]), None);
    }
}
