//! The HTTP API. `ROUTES` lists every endpoint once: the router is built from it and the
//! OpenAPI description generated from it.

mod download;
mod form;
mod images;
mod meta;
mod preview;
mod tasks;
mod upload;
mod view;
mod web;

use std::time::Instant;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, MethodRouter};
use axum::Router;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use vsr_media::code::Code;

/// The header that carries a request's id, in and out.
const REQUEST_ID: &str = "x-request-id";

use super::problem::Problem;
use super::AppState;

pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub responses: &'static [(u16, &'static str)],
    /// The JSON body of its success response, when it has one.
    pub body: Option<meta::BodySchema>,
}

const TASK_ERRORS: &[(u16, &str)] = &[(401, "API key missing or wrong"), (404, "no such task")];

pub const ROUTES: &[Route] = &[
    Route {
        method: "post",
        path: "/api/upload",
        summary: "Upload a video with settings; queues a task (or keeps a draft with start=false)",
        responses: &[
            (202, "task queued"),
            (400, "bad settings (`field` names it)"),
            (403, "cross-site request from a browser"),
            (408, "the upload paused too long or took too long"),
            (413, "over MAX_CONTENT_LENGTH or a limit"),
            (415, "not a supported video"),
            (429, "queue full"),
            (503, "as many uploads or probes running as allowed"),
            (507, "not enough disk"),
        ],
        body: Some(meta::schema::<view::TaskView>),
    },
    Route {
        method: "post",
        path: "/api/start/{id}",
        summary: "Queue a draft (uploaded with start=false), with final settings as the JSON body",
        responses: &[
            (202, "task queued"),
            (400, "bad settings"),
            (404, "no such task"),
            (409, "not a draft"),
        ],
        body: Some(meta::schema::<view::TaskView>),
    },
    Route {
        method: "post",
        path: "/api/preview/{id}",
        summary: "One frame through given settings: {time, settings} -> before/after PNG data URLs",
        responses: &[
            (200, "before and after"),
            (400, "bad settings"),
            (404, "no such task"),
            (410, "upload expired"),
        ],
        body: Some(meta::schema::<preview::Preview>),
    },
    Route {
        method: "get",
        path: "/api/frames/{id}",
        summary: "The same frame of the source and of the result (?time=S)",
        responses: &[
            (200, "before and after"),
            (404, "no such task"),
            (409, "not completed"),
            (410, "expired"),
        ],
        body: Some(meta::schema::<preview::Comparison>),
    },
    Route {
        method: "get",
        path: "/api/status/{id}",
        summary: "Task status, effective settings and timestamps",
        responses: TASK_ERRORS,
        body: Some(meta::schema::<view::TaskView>),
    },
    Route {
        method: "get",
        path: "/api/progress/{id}",
        summary: "Frames done, fps and ETA",
        responses: TASK_ERRORS,
        body: Some(meta::schema::<view::ProgressView>),
    },
    Route {
        method: "get",
        path: "/api/events/{id}",
        summary: "Progress as Server-Sent Events until the task ends",
        responses: TASK_ERRORS,
        body: None,
    },
    Route {
        method: "get",
        path: "/api/download/{id}",
        summary: "The result (Range supported; signed links need no key)",
        responses: &[
            (200, "the video"),
            (206, "part of the video"),
            (400, "a link parameter given twice"),
            (401, "no key and no signed link"),
            (403, "bad or expired signature"),
            (404, "no such task"),
            (409, "not completed"),
            (410, "expired"),
        ],
        body: None,
    },
    Route {
        method: "post",
        path: "/api/cancel/{id}",
        summary: "Cancel a queued or running task",
        responses: &[
            (200, "the cancelled task"),
            (404, "no such task"),
            (409, "already finished"),
        ],
        body: Some(meta::schema::<view::TaskView>),
    },
    Route {
        method: "get",
        path: "/api/tasks",
        summary: "Tasks, newest first (page, perPage)",
        responses: &[(200, "a page of tasks")],
        body: Some(meta::schema::<view::TaskList>),
    },
    Route {
        method: "get",
        path: "/api/tasks/{id}",
        summary: "Same as /api/status/{id}",
        responses: TASK_ERRORS,
        body: Some(meta::schema::<view::TaskView>),
    },
    Route {
        method: "delete",
        path: "/api/tasks/{id}",
        summary: "Remove a task and its files now",
        responses: &[(204, "removed"), (404, "no such task")],
        body: None,
    },
    Route {
        method: "get",
        path: "/api/models",
        summary: "Models, presets and scales",
        responses: &[(200, "models")],
        body: Some(meta::schema::<meta::ModelsView>),
    },
    Route {
        method: "post",
        path: "/api/images",
        summary: "Upscale one image (PNG, JPEG, WebP; multipart `image` and `settings`) and get it back in its format",
        responses: &[
            (200, "the upscaled image"),
            (400, "missing_image, invalid_settings, model_unavailable, output_too_large"),
            (413, "too_large"),
            (415, "unreadable_media"),
            (503, "server_busy"),
        ],
        body: None,
    },
    Route {
        method: "get",
        path: "/api/workers",
        summary: "Live workers on every machine: host, device, task, last heartbeat",
        responses: &[(200, "workers"), (503, "the task store does not answer")],
        body: Some(meta::schema::<meta::WorkersView>),
    },
    Route {
        method: "get",
        path: "/api/openapi.json",
        summary: "This description",
        responses: &[(200, "OpenAPI 3.1")],
        body: None,
    },
    Route {
        method: "get",
        path: "/",
        summary: "The web page",
        responses: &[(200, "HTML")],
        body: None,
    },
    Route {
        method: "get",
        path: "/static/{name}",
        summary: "The web page's script and style",
        responses: &[(200, "file"), (404, "no such file")],
        body: None,
    },
    Route {
        method: "get",
        path: "/healthz",
        summary: "Liveness, queue length, workers and the device models run on (no key needed)",
        responses: &[(200, "ok")],
        body: Some(meta::schema::<meta::Health>),
    },
    Route {
        method: "get",
        path: "/metrics",
        summary: "Prometheus metrics (the operator's metrics key when set)",
        responses: &[
            (200, "metrics"),
            (401, "metrics key missing or wrong"),
            (403, "API keys set but no metrics key"),
        ],
        body: None,
    },
];

/// Longest stem of a download's name, in characters (file systems allow 255 bytes a name).
const MAX_STEM_CHARS: usize = 100;

/// `Content-Disposition` for a result named after the client's file: `STEM_WxH.EXT`. The stem
/// is the client's name without folders, leading dots (a hidden file), control characters or
/// quotes, cut to [`MAX_STEM_CHARS`]; `fallback` stands in for a name with nothing left.
/// `filename` carries an ASCII form (other characters as `_`) for old clients, `filename*`
/// (RFC 6266) the name itself in UTF-8 when it is not plain ASCII.
pub(crate) fn attachment(client_name: &str, fallback: &str, size: (u64, u64), ext: &str) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    /// RFC 5987's attr-char, less a few that some clients mishandle: kept as they are.
    const KEPT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_');
    let base = client_name.rsplit(['/', '\\']).next().unwrap_or("");
    let stem = base.rsplit_once('.').map_or(base, |(stem, _)| stem);
    let stem: String = stem
        .chars()
        .filter(|c| !c.is_control() && !"\"\\".contains(*c))
        .collect::<String>()
        .trim()
        .trim_start_matches('.')
        .chars()
        .take(MAX_STEM_CHARS)
        .collect();
    let name = if stem.trim().is_empty() {
        format!("{fallback}_{}x{}.{ext}", size.0, size.1)
    } else {
        format!("{stem}_{}x{}.{ext}", size.0, size.1)
    };
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if ascii == name {
        format!("attachment; filename=\"{name}\"")
    } else {
        let encoded = utf8_percent_encode(&name, KEPT);
        format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
    }
}

fn handler(app: &AppState, method: &str, path: &str) -> MethodRouter<AppState> {
    match (method, path) {
        // The one route with a large body: its limit covers the whole body, chunked or not.
        ("post", "/api/upload") => post(upload::upload).layer(DefaultBodyLimit::max(
            (app.config.max_content_length + form::FORM_OVERHEAD) as usize,
        )),
        ("get", "/api/status/{id}") | ("get", "/api/tasks/{id}") => get(tasks::status),
        ("get", "/api/progress/{id}") => get(tasks::progress),
        ("post", "/api/start/{id}") => post(preview::start),
        ("post", "/api/preview/{id}") => post(preview::preview),
        ("get", "/api/frames/{id}") => get(preview::frames),
        ("get", "/") => get(web::index),
        ("get", "/static/{name}") => get(web::asset),
        ("get", "/api/events/{id}") => get(tasks::events),
        ("get", "/api/download/{id}") => get(download::download),
        ("post", "/api/cancel/{id}") => post(tasks::cancel),
        ("get", "/api/tasks") => get(tasks::list),
        ("delete", "/api/tasks/{id}") => delete(tasks::delete),
        ("get", "/api/models") => get(meta::models),
        ("get", "/api/workers") => get(meta::workers),
        // An image is one big part too: the upload's limit.
        ("post", "/api/images") => post(images::upscale).layer(DefaultBodyLimit::max(
            (app.config.max_content_length + form::FORM_OVERHEAD) as usize,
        )),
        ("get", "/api/openapi.json") => get(meta::openapi),
        ("get", "/healthz") => get(meta::health),
        ("get", "/metrics") => get(meta::metrics),
        _ => unreachable!("every route in ROUTES has a handler: {method} {path}"),
    }
}

/// The page's policy: its own script and style files, images as data URLs (previews), no
/// inline code, no framing by any site.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; font-src 'self'; \
     form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// Headers every response carries unless its handler set its own.
const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("x-content-type-options", "nosniff"),
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-frame-options", "DENY"),
    // Download links carry their signature: never hand them to another site.
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
];

/// Largest body of any route but the upload (JSON settings, a preview request).
const JSON_BODY_LIMIT: usize = 64 * 1024;

pub fn router(app: AppState) -> Router {
    let mut router: Router<AppState> = Router::new();
    for r in ROUTES {
        let mut route = handler(&app, r.method, r.path);
        if r.path != "/api/upload" && r.path != "/api/images" {
            route = route.layer(middleware::from_fn_with_state(app.clone(), small_body));
        }
        router = router.route(r.path, route);
    }
    let mut router = router
        .fallback(|| async { Problem::new(Code::NotFound, "no such endpoint") })
        .layer(middleware::from_fn_with_state(
            app.clone(),
            super::auth::authenticate,
        ))
        .layer(middleware::from_fn(super::problem::every_error_as_problem));
    for (name, value) in SECURITY_HEADERS {
        router = router.layer(SetResponseHeaderLayer::if_not_present(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        ));
    }
    // Request ids (a client's own `X-Request-Id` is kept) are tower-http's; each response
    // carries its request's id.
    let request_id = HeaderName::from_static(REQUEST_ID);
    router
        .layer(middleware::from_fn_with_state(app.clone(), log_request))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(app)
}

/// Reads a small request body whole, within the JSON body timeout and limit, before the
/// handler runs: a client trickling a few bytes a second cannot hold a handler open.
async fn small_body(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let deadline = app.config.http.json_body_timeout();
    let bytes =
        match tokio::time::timeout(deadline, axum::body::to_bytes(body, JSON_BODY_LIMIT)).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(_)) => {
                return Problem::new(
                    Code::TooLarge,
                    format!("request bodies here are limited to {JSON_BODY_LIMIT} bytes"),
                )
                .into_response()
            }
            Err(_) => {
                return Problem::new(
                    Code::RequestTimeout,
                    format!(
                        "the request body did not arrive within {} s",
                        deadline.as_secs()
                    ),
                )
                .into_response()
            }
        };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// One log line per request, with its id, and the request counted for `/metrics`.
async fn log_request(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let started = Instant::now();
    let response = next.run(req).await.into_response();
    let status = response.status().as_u16();
    app.metrics.count_response(status);
    tracing::info!(request_id = %id, %method, %path, status, ms = started.elapsed().as_millis() as u64, "request");
    response
}

#[cfg(test)]
mod tests {
    use super::attachment;

    /// Download names: the client's stem without folders, leading dots, quotes or control
    /// characters, cut short, and ASCII in `filename` with the name itself in `filename*`.
    #[test]
    fn download_names_are_safe_and_kept() {
        let name = |client: &str| attachment(client, "video", (352, 288), "mp4");
        assert_eq!(
            name("clip.mp4"),
            "attachment; filename=\"clip_352x288.mp4\""
        );
        assert_eq!(name(".mp4"), "attachment; filename=\"video_352x288.mp4\"");
        assert_eq!(
            name(".hidden.mov"),
            "attachment; filename=\"hidden_352x288.mp4\""
        );
        assert_eq!(
            name("C:\\Users\\me\\a.mkv"),
            "attachment; filename=\"a_352x288.mp4\""
        );
        assert_eq!(
            name("../../etc/x.mp4"),
            "attachment; filename=\"x_352x288.mp4\""
        );
        assert_eq!(
            name("a\"b\r\n.mp4"),
            "attachment; filename=\"ab_352x288.mp4\""
        );
        assert_eq!(
            name("évidence 日本.mp4"),
            "attachment; filename=\"_vidence____352x288.mp4\"; \
             filename*=UTF-8''%C3%A9vidence%20%E6%97%A5%E6%9C%AC_352x288.mp4"
        );
        let long = name(&format!("{}.mp4", "x".repeat(3000)));
        assert!(long.len() < 150, "{long}");
    }
}
