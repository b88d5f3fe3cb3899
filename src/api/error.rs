//! API errors: the `{"code","message"}` body of API.md §2, and the one place
//! where every internal error becomes an HTTP status.

use aionbd_shards::ShardError;

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// The `Allow` header of a 405 answer.
    pub allow: Option<&'static str>,
    /// A tenant quota refused the request (counted in `/metrics`).
    pub quota: Option<aionbd_shards::quota::Quota>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), allow: None, quota: None }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_argument", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "not_found", message)
    }

    pub fn timeout() -> Self {
        Self::new(408, "request_timeout", "request did not complete within the request timeout")
    }

    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"code": self.code, "message": self.message}))
            .expect("a string map always serialises")
    }
}

impl From<ShardError> for ApiError {
    fn from(e: ShardError) -> Self {
        match e {
            ShardError::InvalidArgument(m) => ApiError::new(400, "invalid_argument", m),
            ShardError::NotFound(m) => ApiError::new(404, "not_found", m),
            ShardError::Conflict(m) => ApiError::new(409, "conflict", m),
            // A collection dropped while it was exported: as if not found.
            ShardError::Gone(m) => ApiError::new(404, "not_found", m),
            ShardError::ResourceExhausted(m) => ApiError::new(429, "resource_exhausted", m),
            ShardError::Quota(q, m) => ApiError { quota: Some(q), ..ApiError::new(429, "resource_exhausted", m) },
            ShardError::InsufficientStorage(m) => ApiError::new(507, "insufficient_storage", m),
            ShardError::Internal(m) => ApiError::new(500, "internal", m),
        }
    }
}

/// Protocol errors found by the HTTP layer, with the API's codes.
pub fn from_http(e: &aionbd_http::HttpError) -> ApiError {
    let code = match e.status {
        413 => "payload_too_large",
        408 => "request_timeout",
        501 | 505 => "not_implemented",
        _ => "invalid_argument",
    };
    // Name the setting that decides, so the fix is in the message.
    let hint = match e.status {
        413 => "; raise server.max_body_bytes (AIONBD_MAX_BODY_BYTES) or send smaller batches",
        408 => "; the request must arrive within server.request_read_timeout_ms (AIONBD_REQUEST_READ_TIMEOUT_MS)",
        431 => "; raise server.max_head_bytes (AIONBD_MAX_HEAD_BYTES)",
        _ => "",
    };
    ApiError::new(e.status, code, format!("{}{hint}", e.message))
}
