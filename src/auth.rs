//! Authentication (API.md §8): who is calling, for which tenant, with which
//! scope. API keys and opaque bearer tokens are kept only as SHA-256
//! digests and looked up by digest, so no secret is ever compared byte by
//! byte (nothing to time) nor kept in memory in the clear after start-up.
//! JWTs are verified offline with `jsonwebtoken`: HS256 with a shared
//! secret, and EdDSA / ES256 / RS256 public keys from PEM files or a JWKS
//! file, each key pinned to its one algorithm (so `none`, an HS256 token
//! "signed" with a public key and any algorithm not configured fail).
//!
//! `Auth::build` reports every configuration problem at once; secrets are
//! never printed, only their fingerprints (`fingerprint`).

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use ring::digest::{digest, SHA256};
use std::collections::HashMap;
use std::sync::Arc;

/// `AIONBD_AUTH_MODE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Disabled,
    ApiKey,
    BearerToken,
    ApiKeyOrBearerToken,
    Jwt,
    ApiKeyOrJwt,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "disabled" | "" => Mode::Disabled,
            "api_key" => Mode::ApiKey,
            "bearer_token" => Mode::BearerToken,
            "api_key_or_bearer_token" => Mode::ApiKeyOrBearerToken,
            "jwt" => Mode::Jwt,
            "api_key_or_jwt" => Mode::ApiKeyOrJwt,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Disabled => "disabled",
            Mode::ApiKey => "api_key",
            Mode::BearerToken => "bearer_token",
            Mode::ApiKeyOrBearerToken => "api_key_or_bearer_token",
            Mode::Jwt => "jwt",
            Mode::ApiKeyOrJwt => "api_key_or_jwt",
        }
    }

    fn keys(self) -> bool {
        matches!(self, Mode::ApiKey | Mode::ApiKeyOrBearerToken | Mode::ApiKeyOrJwt)
    }
    fn tokens(self) -> bool {
        matches!(self, Mode::BearerToken | Mode::ApiKeyOrBearerToken)
    }
    fn jwt(self) -> bool {
        matches!(self, Mode::Jwt | Mode::ApiKeyOrJwt)
    }
}

/// What a caller may do (API.md §8): `read` reaches the read routes,
/// `write` and `admin` every route; `admin` alone reaches operator routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl Scope {
    pub fn parse(s: &str) -> Option<Scope> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "read" | "readonly" | "read_only" => Scope::Read,
            "write" | "readwrite" | "read_write" => Scope::Write,
            "admin" => Scope::Admin,
            _ => return None,
        })
    }
}

/// An authenticated caller. `tenant` is `None` when auth is disabled
/// (collections then have no namespace).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub tenant: Option<Arc<str>>,
    pub scope: Scope,
}

/// Why a request was refused (the `reason` label of `auth_failures_total`);
/// the client only learns the class, never which part was wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No credential the mode accepts.
    Missing,
    /// An `Authorization` header that is not `Bearer <token>`.
    Malformed,
    /// An API key or opaque token that is not configured.
    Unknown,
    /// A JWT that fails verification (signature, algorithm, key, shape).
    InvalidJwt,
    /// A JWT past `exp` (and the leeway) or before `nbf`.
    Expired,
    /// A JWT whose issuer, audience, tenant or scope claim is not accepted.
    Claims,
}

impl Failure {
    pub const ALL: [Failure; 6] = [
        Failure::Missing,
        Failure::Malformed,
        Failure::Unknown,
        Failure::InvalidJwt,
        Failure::Expired,
        Failure::Claims,
    ];

    /// Position in [`Failure::ALL`] (the metrics' order).
    pub fn index(self) -> usize {
        Failure::ALL.iter().position(|f| *f == self).expect("every failure is in ALL")
    }

    pub fn reason(self) -> &'static str {
        match self {
            Failure::Missing => "missing",
            Failure::Malformed => "malformed",
            Failure::Unknown => "unknown_credential",
            Failure::InvalidJwt => "invalid_jwt",
            Failure::Expired => "expired",
            Failure::Claims => "claims",
        }
    }

    /// What a 401 says: the class of the problem and, for a missing
    /// credential, what this server's mode accepts.
    pub fn message(self, mode: Mode) -> &'static str {
        match self {
            Failure::Missing => match mode {
                Mode::ApiKey => "authentication required: send an x-api-key header",
                Mode::BearerToken | Mode::Jwt => "authentication required: send Authorization: Bearer <token>",
                _ => "authentication required: send an x-api-key header or Authorization: Bearer <token>",
            },
            Failure::Malformed => "malformed Authorization header: expected 'Bearer <token>'",
            Failure::Unknown => "invalid credentials",
            Failure::InvalidJwt => "invalid token",
            Failure::Expired => "token expired or not yet valid",
            Failure::Claims => "token claims not accepted",
        }
    }
}

/// The settings auth is built from (text, as configured).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Settings {
    pub mode: String,
    pub api_keys: String,
    pub api_key_scopes: String,
    pub bearer_tokens: String,
    pub jwt_hs256_secret: String,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub jwt_tenant_claim: String,
    pub jwt_principal_claim: String,
    pub jwt_public_keys: String,
    pub jwt_jwks_path: String,
}

type Digest = [u8; 32];

/// Leeway on `exp` and `nbf` (API.md §8: 60 s).
const JWT_LEEWAY_SECONDS: u64 = 60;
/// Verified tokens a shard remembers (cleared of expired ones when full).
const TOKEN_CACHE_ENTRIES: usize = 4096;

/// Failed authentication attempts per source address in the current UTC
/// minute, on one shard (a connection stays on one shard; a source using
/// both shards gets up to twice the budget). Past the budget a source's
/// requests are refused with 429 before any credential is checked, so a key
/// cannot be guessed at line rate.
#[derive(Default)]
pub struct FailureBudget {
    window: std::cell::RefCell<(u64, HashMap<std::net::IpAddr, u64>)>,
}

/// Sources one shard tracks per minute (a flood of new addresses clears
/// the table rather than growing it).
const FAILURE_SOURCES: usize = 65_536;

impl FailureBudget {
    /// Seconds until the next window if `ip` used up `limit` (0: no limit).
    pub fn exhausted(&self, ip: std::net::IpAddr, limit: u64, now: u64) -> Option<u64> {
        let w = self.window.borrow();
        let used = if w.0 == now / 60 { w.1.get(&ip).copied().unwrap_or(0) } else { 0 };
        (limit > 0 && used >= limit).then(|| 60 - now % 60)
    }

    pub fn count(&self, ip: std::net::IpAddr, now: u64) {
        let mut w = self.window.borrow_mut();
        if w.0 != now / 60 || w.1.len() >= FAILURE_SOURCES {
            *w = (now / 60, HashMap::new());
        }
        *w.1.entry(ip).or_insert(0) += 1;
    }
}

/// Verified JWTs by digest, with the time (unix seconds) they stay valid
/// until; one per shard, so no lock.
#[derive(Default)]
pub struct TokenCache {
    map: std::cell::RefCell<HashMap<Digest, (Principal, u64)>>,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn sha256(s: &str) -> Digest {
    let d = digest(&SHA256, s.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// How a secret is shown in logs and `--print-config`: its SHA-256 prefix.
pub fn fingerprint(secret: &str) -> String {
    let d = sha256(secret);
    format!("sha256:{}", d[..6].iter().map(|b| format!("{b:02x}")).collect::<String>())
}

struct JwtKey {
    key: DecodingKey,
    alg: Algorithm,
}

struct Jwt {
    hs256: Option<JwtKey>,
    /// Public keys by `kid`, each pinned to one algorithm.
    keys: HashMap<String, JwtKey>,
    issuer: Option<String>,
    audience: Vec<String>,
    tenant_claim: String,
}

pub struct Auth {
    pub mode: Mode,
    keys: HashMap<Digest, Principal>,
    tokens: HashMap<Digest, Arc<str>>,
    jwt: Option<Jwt>,
}

/// `tenant:secret,...` pairs (split at the first `:`), checked.
fn pairs(list: &str, what: &str, errors: &mut Vec<String>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item.split_once(':') {
            Some((tenant, secret)) => {
                let (tenant, secret) = (tenant.trim(), secret.trim());
                if tenant.is_empty() || secret.is_empty() {
                    errors.push(format!("{what}: an entry has an empty tenant or secret"));
                } else if secret.contains(':') || secret.contains(char::is_whitespace) {
                    errors.push(format!("{what}: the secret for tenant '{tenant}' contains ':' or a space"));
                } else if !valid_tenant(tenant) {
                    errors.push(format!("{what}: tenant '{tenant}' may only contain A-Z a-z 0-9 - _ ."));
                } else {
                    out.push((tenant.to_owned(), secret.to_owned()));
                }
            }
            None => errors.push(format!("{what}: entry {} is not tenant:secret", fingerprint(item))),
        }
    }
    out
}

fn valid_tenant(t: &str) -> bool {
    !t.is_empty() && t.len() <= 64 && t.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn parse_alg(s: &str) -> Option<Algorithm> {
    match s.trim().to_ascii_uppercase().as_str() {
        "EDDSA" => Some(Algorithm::EdDSA),
        "ES256" => Some(Algorithm::ES256),
        "RS256" => Some(Algorithm::RS256),
        _ => None,
    }
}

fn pem_key(alg: Algorithm, pem: &[u8]) -> jsonwebtoken::errors::Result<DecodingKey> {
    match alg {
        Algorithm::EdDSA => DecodingKey::from_ed_pem(pem),
        Algorithm::ES256 => DecodingKey::from_ec_pem(pem),
        _ => DecodingKey::from_rsa_pem(pem),
    }
}

impl Auth {
    /// Build from settings, or every problem found.
    pub fn build(s: &Settings) -> Result<Auth, Vec<String>> {
        let mut errors = Vec::new();
        let Some(mode) = Mode::parse(&s.mode) else {
            return Err(vec![format!(
                "security.auth_mode = '{}': expected disabled, api_key, bearer_token, api_key_or_bearer_token, jwt \
                 or api_key_or_jwt",
                s.mode
            )]);
        };
        let mut auth = Auth { mode, keys: HashMap::new(), tokens: HashMap::new(), jwt: None };
        if mode == Mode::Disabled {
            return Ok(auth);
        }
        let mut scopes: HashMap<Digest, Scope> = HashMap::new();
        for item in s.api_key_scopes.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item.rsplit_once(':').map(|(k, sc)| (k.trim(), Scope::parse(sc))) {
                Some((key, Some(scope))) if !key.is_empty() => {
                    scopes.insert(sha256(key), scope);
                }
                _ => errors
                    .push(format!("security.api_key_scopes: entry {} is not key:read|write|admin", fingerprint(item))),
            }
        }
        if mode.keys() {
            for (tenant, key) in pairs(&s.api_keys, "security.api_keys", &mut errors) {
                let d = sha256(&key);
                let scope = scopes.remove(&d).unwrap_or(Scope::Admin);
                let p = Principal { tenant: Some(tenant.as_str().into()), scope };
                if let Some(other) = auth.keys.insert(d, p) {
                    errors.push(format!(
                        "security.api_keys: key {} is listed twice (tenants '{}' and '{tenant}')",
                        fingerprint(&key),
                        other.tenant.as_deref().unwrap_or("")
                    ));
                }
            }
            if auth.keys.is_empty() {
                errors.push(format!(
                    "security.auth_mode = {}: needs security.api_keys (AIONBD_AUTH_API_KEYS = tenant:key,...)",
                    mode.as_str()
                ));
            }
            if !scopes.is_empty() {
                errors.push(format!(
                    "security.api_key_scopes: {} scope(s) name a key that is not in security.api_keys",
                    scopes.len()
                ));
            }
        }
        if mode.tokens() {
            for (tenant, token) in pairs(&s.bearer_tokens, "security.bearer_tokens", &mut errors) {
                if auth.tokens.insert(sha256(&token), tenant.as_str().into()).is_some() {
                    errors.push(format!("security.bearer_tokens: token {} is listed twice", fingerprint(&token)));
                }
            }
            if auth.tokens.is_empty() {
                errors.push(format!(
                    "security.auth_mode = {}: needs security.bearer_tokens (AIONBD_AUTH_BEARER_TOKENS = tenant:token,...)",
                    mode.as_str()
                ));
            }
        }
        if mode.jwt() {
            auth.jwt = Some(Jwt::build(s, &mut errors));
        }
        if errors.is_empty() {
            Ok(auth)
        } else {
            Err(errors)
        }
    }

    pub fn enabled(&self) -> bool {
        self.mode != Mode::Disabled
    }

    /// Who sent a request with these headers. The `…_or_…` modes try the
    /// API key first, then the token (a bad key with a good token passes).
    pub fn authenticate(&self, api_key: Option<&str>, authorization: Option<&str>) -> Result<Principal, Failure> {
        self.authenticate_cached(api_key, authorization, None)
    }

    /// [`Auth::authenticate`], remembering verified JWTs in `cache` (one
    /// per shard) until they expire, so a client that sends the same token
    /// again pays a hash and a lookup instead of a signature check.
    pub fn authenticate_cached(
        &self,
        api_key: Option<&str>,
        authorization: Option<&str>,
        cache: Option<&TokenCache>,
    ) -> Result<Principal, Failure> {
        if self.mode == Mode::Disabled {
            return Ok(Principal { tenant: None, scope: Scope::Admin });
        }
        let mut failure = Failure::Missing;
        if self.mode.keys() {
            if let Some(key) = api_key.map(str::trim).filter(|k| !k.is_empty()) {
                match self.keys.get(&sha256(key)) {
                    Some(p) => return Ok(p.clone()),
                    None => failure = Failure::Unknown,
                }
            }
        }
        if !(self.mode.tokens() || self.mode.jwt()) {
            return Err(failure);
        }
        let Some(header) = authorization.map(str::trim).filter(|h| !h.is_empty()) else { return Err(failure) };
        let token = match header.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => token.trim(),
            _ => return Err(Failure::Malformed),
        };
        if self.mode.tokens() {
            return match self.tokens.get(&sha256(token)) {
                Some(tenant) => Ok(Principal { tenant: Some(tenant.clone()), scope: Scope::Admin }),
                None => Err(Failure::Unknown),
            };
        }
        let jwt = self.jwt.as_ref().expect("jwt modes build a verifier");
        let Some(cache) = cache else { return jwt.verify(token).map(|(p, _)| p) };
        let key = sha256(token);
        let now = unix_now();
        if let Some((p, until)) = cache.map.borrow().get(&key) {
            if now <= *until {
                return Ok(p.clone());
            }
        }
        let (p, exp) = jwt.verify(token)?;
        let mut map = cache.map.borrow_mut();
        if map.len() >= TOKEN_CACHE_ENTRIES {
            map.retain(|_, (_, until)| now <= *until);
            if map.len() >= TOKEN_CACHE_ENTRIES {
                map.clear();
            }
        }
        map.insert(key, (p.clone(), exp.saturating_add(JWT_LEEWAY_SECONDS)));
        Ok(p)
    }
}

impl Jwt {
    fn build(s: &Settings, errors: &mut Vec<String>) -> Jwt {
        let mut jwt = Jwt {
            hs256: None,
            keys: HashMap::new(),
            issuer: Some(s.jwt_issuer.trim().to_owned()).filter(|i| !i.is_empty()),
            audience: s.jwt_audience.split(',').map(str::trim).filter(|a| !a.is_empty()).map(String::from).collect(),
            tenant_claim: Some(s.jwt_tenant_claim.trim()).filter(|c| !c.is_empty()).unwrap_or("tenant").to_owned(),
        };
        if !s.jwt_hs256_secret.is_empty() {
            if s.jwt_hs256_secret.len() < 32 {
                errors.push("security.jwt_hs256_secret: use at least 32 bytes".into());
            }
            jwt.hs256 =
                Some(JwtKey { key: DecodingKey::from_secret(s.jwt_hs256_secret.as_bytes()), alg: Algorithm::HS256 });
        }
        for item in s.jwt_public_keys.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let mut parts = item.splitn(3, ':');
            let (kid, alg, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let Some(alg) = parse_alg(alg).filter(|_| !kid.is_empty() && !path.is_empty()) else {
                errors.push(format!("security.jwt_public_keys: '{item}' is not kid:EdDSA|ES256|RS256:path"));
                continue;
            };
            match std::fs::read(path) {
                Ok(pem) => match pem_key(alg, &pem) {
                    Ok(key) => {
                        if jwt.keys.insert(kid.to_owned(), JwtKey { key, alg }).is_some() {
                            errors.push(format!("security.jwt_public_keys: kid '{kid}' is listed twice"));
                        }
                    }
                    Err(e) => errors.push(format!("security.jwt_public_keys: {path}: not a {alg:?} public key ({e})")),
                },
                Err(e) => errors.push(format!("security.jwt_public_keys: cannot read {path}: {e}")),
            }
        }
        if !s.jwt_jwks_path.trim().is_empty() {
            jwt.load_jwks(s.jwt_jwks_path.trim(), errors);
        }
        if jwt.hs256.is_none() && jwt.keys.is_empty() {
            errors.push(format!(
                "security.auth_mode = {}: needs a key: security.jwt_hs256_secret (AIONBD_AUTH_JWT_HS256_SECRET), \
                 security.jwt_public_keys or security.jwt_jwks_path",
                s.mode.trim()
            ));
        }
        jwt
    }

    fn load_jwks(&mut self, path: &str, errors: &mut Vec<String>) {
        let read = || -> Result<jsonwebtoken::jwk::JwkSet, Box<dyn std::error::Error>> {
            Ok(serde_json::from_slice(&std::fs::read(path)?)?)
        };
        let set = match read() {
            Ok(s) => s,
            Err(e) => return errors.push(format!("security.jwt_jwks_path: {path}: {e}")),
        };
        for jwk in &set.keys {
            let kid = jwk.common.key_id.clone().unwrap_or_default();
            let alg = jwk.common.key_algorithm.and_then(|a| parse_alg(&format!("{a:?}")));
            match (kid.is_empty(), alg, DecodingKey::from_jwk(jwk)) {
                (false, Some(alg), Ok(key)) => {
                    if self.keys.insert(kid.clone(), JwtKey { key, alg }).is_some() {
                        errors.push(format!("security.jwt_jwks_path: kid '{kid}' is listed twice"));
                    }
                }
                _ => errors.push(format!(
                    "security.jwt_jwks_path: {path}: key '{kid}' needs a kid and a pinned alg (EdDSA, ES256 or RS256)"
                )),
            }
        }
    }

    /// The caller and the token's `exp`.
    fn verify(&self, token: &str) -> Result<(Principal, u64), Failure> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Failure::InvalidJwt)?;
        let key = match &header.kid {
            Some(kid) => self.keys.get(kid),
            None if header.alg == Algorithm::HS256 => self.hs256.as_ref(),
            // Without a kid, an asymmetric token needs exactly one key.
            None => Some(self.keys.values().next()).filter(|_| self.keys.len() == 1).flatten(),
        };
        let Some(key) = key.filter(|k| k.alg == header.alg) else { return Err(Failure::InvalidJwt) };
        let mut v = Validation::new(key.alg);
        v.leeway = JWT_LEEWAY_SECONDS;
        v.validate_nbf = true;
        if let Some(iss) = &self.issuer {
            v.set_issuer(&[iss]);
        }
        if self.audience.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&self.audience);
        }
        use jsonwebtoken::errors::ErrorKind as K;
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &key.key, &v).map_err(
            |e| match e.kind() {
                K::ExpiredSignature | K::ImmatureSignature => Failure::Expired,
                K::InvalidIssuer | K::InvalidAudience | K::MissingRequiredClaim(_) => Failure::Claims,
                _ => Failure::InvalidJwt,
            },
        )?;
        let claims = data.claims;
        let tenant = claims
            .get(&self.tenant_claim)
            .and_then(|t| t.as_str())
            .map(str::trim)
            .filter(|t| valid_tenant(t))
            .ok_or(Failure::Claims)?;
        // An optional scope claim ("read", "write", "admin", or several
        // words: the highest counts); without it a JWT caller is admin.
        let scope = match claims.get("scope") {
            None => Scope::Admin,
            Some(v) => {
                v.as_str().and_then(|s| s.split_whitespace().filter_map(Scope::parse).max()).ok_or(Failure::Claims)?
            }
        };
        let exp = claims.get("exp").and_then(|e| e.as_u64()).unwrap_or(0);
        Ok((Principal { tenant: Some(tenant.into()), scope }, exp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(mode: &str) -> Settings {
        Settings { mode: mode.into(), ..Default::default() }
    }

    #[test]
    fn keys_tokens_and_scopes() {
        let mut s = settings("api_key_or_bearer_token");
        s.api_keys = "acme:k-one, beta:k-two".into();
        s.api_key_scopes = "k-two:readonly".into();
        s.bearer_tokens = "acme:t-one".into();
        let a = Auth::build(&s).unwrap();
        let p = a.authenticate(Some("k-one"), None).unwrap();
        assert_eq!((p.tenant.as_deref(), p.scope), (Some("acme"), Scope::Admin));
        assert_eq!(a.authenticate(Some("k-two"), None).unwrap().scope, Scope::Read);
        // A bad key with a good token passes (the key is tried first).
        assert_eq!(a.authenticate(Some("nope"), Some("Bearer t-one")).unwrap().tenant.as_deref(), Some("acme"));
        assert_eq!(a.authenticate(Some("nope"), None), Err(Failure::Unknown));
        assert_eq!(a.authenticate(None, None), Err(Failure::Missing));
        assert_eq!(a.authenticate(None, Some("Basic abc")), Err(Failure::Malformed));
        assert_eq!(a.authenticate(None, Some("bearer t-one")).unwrap().scope, Scope::Admin);
        assert_eq!(a.authenticate(None, Some("Bearer t-two")), Err(Failure::Unknown));
    }

    #[test]
    fn verified_jwts_are_remembered_until_they_expire() {
        let secret = "0123456789abcdef0123456789abcdef";
        let a = Auth::build(&Settings { jwt_hs256_secret: secret.into(), ..settings("jwt") }).unwrap();
        let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
        let make = |exp: u64, tenant: &str| {
            let c = serde_json::json!({"tenant": tenant, "exp": exp});
            jsonwebtoken::encode(&jsonwebtoken::Header::default(), &c, &key).unwrap()
        };
        let cache = TokenCache::default();
        let good = format!("Bearer {}", make(unix_now() + 600, "t1"));
        let p = a.authenticate_cached(None, Some(&good), Some(&cache)).unwrap();
        assert_eq!(a.authenticate_cached(None, Some(&good), Some(&cache)).unwrap(), p);
        assert_eq!(cache.map.borrow().len(), 1);
        // A cached entry past its time is verified again (and refused).
        let old = format!("Bearer {}", make(unix_now() - 3600, "t2"));
        cache.map.borrow_mut().insert(sha256(old.trim_start_matches("Bearer ")), (p.clone(), unix_now() - 1));
        assert_eq!(a.authenticate_cached(None, Some(&old), Some(&cache)), Err(Failure::Expired));
        // Another token is another entry, whatever the first one says.
        let other = format!("Bearer {}", make(unix_now() + 600, "t3"));
        assert_eq!(a.authenticate_cached(None, Some(&other), Some(&cache)).unwrap().tenant.as_deref(), Some("t3"));
    }

    #[test]
    fn bad_settings_are_all_reported_and_never_show_a_secret() {
        let mut s = settings("api_key");
        s.api_keys = "acme:sekrit1,beta:sekrit1,nocolon,:x,t:has space,bad tenant:k".into();
        s.api_key_scopes = "sekrit1:root,ghost:read".into();
        let errs = Auth::build(&s).err().unwrap();
        let all = errs.join("\n");
        assert!(errs.len() >= 5, "{all}");
        assert!(all.contains("listed twice") && all.contains("not in security.api_keys"), "{all}");
        assert!(!all.contains("sekrit1") && !all.contains("nocolon"), "a secret was printed: {all}");
        assert!(Auth::build(&settings("jwt")).err().unwrap()[0].contains("needs a key"));
        assert!(Auth::build(&settings("bearer_token")).is_err());
        assert!(Auth::build(&settings("kerberos")).is_err());
        assert!(Auth::build(&settings("disabled")).unwrap().authenticate(None, None).unwrap().tenant.is_none());
    }
}
