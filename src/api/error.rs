//! API errors: the `{"code","message"}` body of API.md §2, and the one place
//! where every internal error becomes an HTTP status.

use aionbd_http::{HttpError, HttpErrorKind};
use aionbd_shards::ShardError;

/// What an error answer is, for machines: its status and the `code` of its
/// body (API.md §2). [`ErrorCode::status`] and [`ErrorCode::as_str`] are
/// the only places either is written, so a new variant does not compile
/// until both are decided. A few statuses share a code (405, 417 and 431
/// answer `invalid_argument`, as 400 does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidArgument,
    Unauthorized,
    Forbidden,
    NotFound,
    /// The path exists without this method (the answer carries `Allow`).
    MethodNotAllowed,
    RequestTimeout,
    Conflict,
    PayloadTooLarge,
    /// An `Expect` other than `100-continue`.
    ExpectationFailed,
    ResourceExhausted,
    /// The request head is over `server.max_head_bytes` or has too many headers.
    HeadTooLarge,
    Internal,
    /// A transfer coding other than chunked.
    NotImplemented,
    NotReady,
    InsufficientStorage,
}

impl ErrorCode {
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidArgument => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::Conflict => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::ExpectationFailed => 417,
            ErrorCode::ResourceExhausted => 429,
            ErrorCode::HeadTooLarge => 431,
            ErrorCode::Internal => 500,
            ErrorCode::NotImplemented => 501,
            ErrorCode::NotReady => 503,
            ErrorCode::InsufficientStorage => 507,
        }
    }

    /// The body's `code`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument
            | ErrorCode::MethodNotAllowed
            | ErrorCode::ExpectationFailed
            | ErrorCode::HeadTooLarge => "invalid_argument",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::ResourceExhausted => "resource_exhausted",
            ErrorCode::Internal => "internal",
            ErrorCode::NotImplemented => "not_implemented",
            ErrorCode::NotReady => "not_ready",
            ErrorCode::InsufficientStorage => "insufficient_storage",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// The `Allow` header of a 405 answer.
    pub allow: Option<&'static str>,
    /// A tenant quota refused the request (counted in `/metrics`).
    pub quota: Option<aionbd_shards::quota::Quota>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into(), allow: None, quota: None }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    pub fn timeout() -> Self {
        Self::new(ErrorCode::RequestTimeout, "request did not complete within the request timeout")
    }

    pub fn status(&self) -> u16 {
        self.code.status()
    }

    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"code": self.code.as_str(), "message": self.message}))
            .expect("a string map always serialises")
    }
}

impl From<ShardError> for ApiError {
    fn from(e: ShardError) -> Self {
        match e {
            ShardError::InvalidArgument(m) => ApiError::new(ErrorCode::InvalidArgument, m),
            ShardError::NotFound(m) => ApiError::new(ErrorCode::NotFound, m),
            ShardError::Conflict(m) => ApiError::new(ErrorCode::Conflict, m),
            // A collection dropped while it was exported: as if not found.
            ShardError::Gone(m) => ApiError::new(ErrorCode::NotFound, m),
            ShardError::ResourceExhausted(m) => ApiError::new(ErrorCode::ResourceExhausted, m),
            ShardError::Quota(q, m) => ApiError { quota: Some(q), ..ApiError::new(ErrorCode::ResourceExhausted, m) },
            ShardError::InsufficientStorage(m) => ApiError::new(ErrorCode::InsufficientStorage, m),
            ShardError::Internal(m) => ApiError::new(ErrorCode::Internal, m),
        }
    }
}

/// Protocol errors found by the HTTP layer, with the API's codes.
pub fn from_http(e: &HttpError) -> ApiError {
    // Name the setting that decides, so the fix is in the message.
    let (code, hint) = match e.kind {
        HttpErrorKind::BadRequest => (ErrorCode::InvalidArgument, ""),
        HttpErrorKind::Timeout => (
            ErrorCode::RequestTimeout,
            "; the request must arrive within server.request_read_timeout_ms (AIONBD_REQUEST_READ_TIMEOUT_MS)",
        ),
        HttpErrorKind::BodyTooLarge => (
            ErrorCode::PayloadTooLarge,
            "; raise server.max_body_bytes (AIONBD_MAX_BODY_BYTES) or send smaller batches",
        ),
        HttpErrorKind::ExpectationFailed => (ErrorCode::ExpectationFailed, ""),
        HttpErrorKind::HeadTooLarge => {
            (ErrorCode::HeadTooLarge, "; raise server.max_head_bytes (AIONBD_MAX_HEAD_BYTES)")
        }
        HttpErrorKind::NotImplemented => (ErrorCode::NotImplemented, ""),
    };
    ApiError::new(code, format!("{}{hint}", e.message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_http_error_keeps_its_status() {
        for kind in [
            HttpErrorKind::BadRequest,
            HttpErrorKind::Timeout,
            HttpErrorKind::BodyTooLarge,
            HttpErrorKind::ExpectationFailed,
            HttpErrorKind::HeadTooLarge,
            HttpErrorKind::NotImplemented,
        ] {
            assert_eq!(from_http(&HttpError::new(kind, "x")).status(), kind.status(), "{kind:?}");
        }
    }

    #[test]
    fn the_body_is_the_api_md_shape() {
        let e = ApiError { allow: Some("GET"), ..ApiError::new(ErrorCode::MethodNotAllowed, "no \"POST\" here") };
        assert_eq!(e.status(), 405);
        assert_eq!(e.body(), br#"{"code":"invalid_argument","message":"no \"POST\" here"}"#);
    }
}
