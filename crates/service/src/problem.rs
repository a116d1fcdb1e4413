//! Errors as RFC 9457 problem details, each with a stable `code` that clients can match on.
//! Handlers return [`Problem`]s; [`every_error_as_problem`] turns what the framework answers
//! by itself (a malformed query or JSON body, a wrong method, a timeout) into one too, so no
//! error reaches a client in another shape.

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

#[derive(Debug)]
pub struct Problem {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    /// The request field at fault, for 400s.
    pub field: Option<String>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            code,
            detail: detail.into(),
            field: None,
        }
    }

    pub fn bad_field(
        code: &'static str,
        field: impl Into<String>,
        detail: impl Into<String>,
    ) -> Problem {
        Problem {
            field: Some(field.into()),
            ..Problem::new(StatusCode::BAD_REQUEST, code, detail)
        }
    }

    pub fn not_found(id: &str) -> Problem {
        Problem::new(
            StatusCode::NOT_FOUND,
            "task_not_found",
            format!("no task {id}"),
        )
    }

    /// A failure of ours: logged in full, told to the client without internals.
    pub fn internal(e: impl std::fmt::Display) -> Problem {
        tracing::error!(error = %e, "internal error");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the server failed to handle this request; its log has the details",
        )
    }

    /// Too much at once: a limit on concurrent uploads or probes is reached.
    pub fn busy(what: &str) -> Problem {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_busy",
            format!("the server is handling as many {what} as it allows; try again shortly"),
        )
    }
}

/// The stable code for an error status the framework produced without a [`Problem`].
fn code_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::RANGE_NOT_SATISFIABLE => "range_not_satisfiable",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_request",
        StatusCode::SERVICE_UNAVAILABLE => "server_busy",
        s if s.is_server_error() => "internal_error",
        _ => "bad_request",
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
    let problem = Problem::new(status, code_for(status), detail).into_response();
    let (problem_parts, problem_body) = problem.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    drop(problem_parts);
    Response::from_parts(parts, problem_body)
}

impl From<crate::store::StoreError> for Problem {
    fn from(e: crate::store::StoreError) -> Problem {
        Problem::internal(e)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({
            "type": format!("/problems/{}", self.code),
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
            "code": self.code,
        });
        if let Some(field) = self.field {
            body["field"] = field.into();
        }
        (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response()
    }
}
