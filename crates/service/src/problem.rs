//! Errors as RFC 9457 problem details, each with a stable `code` that clients can match on.
//! Handlers return [`Problem`]s; [`every_error_as_problem`] turns what the framework answers
//! by itself (a malformed query or JSON body, a wrong method, a timeout) into one too, so no
//! error reaches a client in another shape.

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use vsr_media::code::Code;

#[derive(Debug)]
pub struct Problem {
    /// The code's own status (`Code::http_status`), unless the framework chose another.
    pub status: StatusCode,
    pub code: Code,
    pub detail: String,
    /// The request field at fault, for 400s.
    pub field: Option<String>,
}

impl Problem {
    pub fn new(code: Code, detail: impl Into<String>) -> Problem {
        Problem {
            status: StatusCode::from_u16(code.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            detail: detail.into(),
            field: None,
        }
    }

    pub fn bad_field(code: Code, field: impl Into<String>, detail: impl Into<String>) -> Problem {
        Problem {
            field: Some(field.into()),
            ..Problem::new(code, detail)
        }
    }

    pub fn not_found(id: &str) -> Problem {
        Problem::new(Code::TaskNotFound, format!("no task {id}"))
    }

    /// A failure of ours: logged in full, told to the client without internals.
    pub fn internal(e: impl std::fmt::Display) -> Problem {
        tracing::error!(error = %e, "internal error");
        Problem::new(
            Code::InternalError,
            "the server failed to handle this request; its log has the details",
        )
    }

    /// Too much at once: a limit on concurrent uploads or probes is reached.
    pub fn busy(what: &str) -> Problem {
        Problem::new(
            Code::ServerBusy,
            format!("the server is handling as many {what} as it allows; try again shortly"),
        )
    }
}

/// The stable code for an error status the framework produced without a [`Problem`].
fn code_for(status: StatusCode) -> Code {
    match status {
        StatusCode::NOT_FOUND => Code::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => Code::MethodNotAllowed,
        StatusCode::REQUEST_TIMEOUT => Code::RequestTimeout,
        StatusCode::PAYLOAD_TOO_LARGE => Code::TooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Code::UnsupportedMediaType,
        StatusCode::RANGE_NOT_SATISFIABLE => Code::RangeNotSatisfiable,
        StatusCode::UNPROCESSABLE_ENTITY => Code::InvalidRequest,
        StatusCode::SERVICE_UNAVAILABLE => Code::ServerBusy,
        s if s.is_server_error() => Code::InternalError,
        _ => Code::BadRequest,
    }
}

/// Longest framework message passed on as a problem's detail.
const MAX_FRAMEWORK_DETAIL: usize = 300;

/// Rewrites every error response that is not already problem+json into one, keeping its
/// status and headers. The framework's own text (axum's extractor messages, which name the
/// field at fault) becomes the detail for 4xx; 5xx get a fixed sentence.
pub async fn every_error_as_problem(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let detail = if status.is_server_error() || text.trim().is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text.trim().chars().take(MAX_FRAMEWORK_DETAIL).collect()
    };
    let problem = Problem {
        status,
        ..Problem::new(code_for(status), detail)
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    Response::from_parts(parts, problem.into_response().into_body())
}

impl From<crate::store::StoreError> for Problem {
    /// A database that does not answer is a 503 to retry; anything else is ours.
    fn from(e: crate::store::StoreError) -> Problem {
        if e.is_unavailable() {
            tracing::warn!(error = %e, "the task store is unavailable");
            return Problem::new(
                Code::StoreUnavailable,
                "the task database does not answer; try again shortly",
            );
        }
        Problem::internal(e)
    }
}

impl From<crate::storage::StorageError> for Problem {
    /// Storage that does not answer is a 503 to retry; a full disk a 507.
    fn from(e: crate::storage::StorageError) -> Problem {
        tracing::warn!(error = %e, "storage failed");
        match e.code() {
            Code::InsufficientStorage => Problem::new(e.code(), "the server's storage is full"),
            Code::StorageUnavailable => Problem::new(
                e.code(),
                "the storage holding the files does not answer; try again shortly",
            ),
            _ => Problem::internal(e),
        }
    }
}

/// A problem as clients receive it (RFC 9457), for the OpenAPI document.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ProblemBody {
    /// `/problems/CODE`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// What went wrong, in our own words.
    pub detail: String,
    /// The stable code clients match on.
    pub code: String,
    /// The request field at fault, for settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = ProblemBody {
            kind: format!("/problems/{}", self.code),
            title: self.status.canonical_reason().unwrap_or("Error").into(),
            status: self.status.as_u16(),
            detail: self.detail,
            code: self.code.as_str().into(),
            field: self.field,
        };
        (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            serde_json::to_string(&body).expect("a problem serialises"),
        )
            .into_response()
    }
}
