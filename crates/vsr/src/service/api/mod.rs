//! The HTTP API. `ROUTES` lists every endpoint once: the router is built from it and the
//! OpenAPI description generated from it.

mod download;
mod meta;
mod preview;
mod tasks;
mod upload;
mod view;
mod web;

use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, MethodRouter};
use axum::Router;

use super::problem::Problem;
use super::AppState;

pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub responses: &'static [(u16, &'static str)],
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
            (413, "over MAX_CONTENT_LENGTH or a limit"),
            (415, "not a supported video"),
            (429, "queue full"),
            (507, "not enough disk"),
        ],
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
    },
    Route {
        method: "get",
        path: "/api/status/{id}",
        summary: "Task status, effective settings and timestamps",
        responses: TASK_ERRORS,
    },
    Route {
        method: "get",
        path: "/api/progress/{id}",
        summary: "Frames done, fps and ETA",
        responses: TASK_ERRORS,
    },
    Route {
        method: "get",
        path: "/api/events/{id}",
        summary: "Progress as Server-Sent Events until the task ends",
        responses: TASK_ERRORS,
    },
    Route {
        method: "get",
        path: "/api/download/{id}",
        summary: "The result (Range supported; signed links need no key)",
        responses: &[
            (200, "the video"),
            (206, "part of the video"),
            (403, "bad or expired signature"),
            (404, "no such task"),
            (409, "not completed"),
            (410, "expired"),
        ],
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
    },
    Route {
        method: "get",
        path: "/api/tasks",
        summary: "Tasks, newest first (page, perPage)",
        responses: &[(200, "a page of tasks")],
    },
    Route {
        method: "get",
        path: "/api/tasks/{id}",
        summary: "Same as /api/status/{id}",
        responses: TASK_ERRORS,
    },
    Route {
        method: "delete",
        path: "/api/tasks/{id}",
        summary: "Remove a task and its files now",
        responses: &[(204, "removed"), (404, "no such task")],
    },
    Route {
        method: "get",
        path: "/api/models",
        summary: "Models, presets and scales",
        responses: &[(200, "models")],
    },
    Route {
        method: "get",
        path: "/api/openapi.json",
        summary: "This description",
        responses: &[(200, "OpenAPI 3.1")],
    },
    Route {
        method: "get",
        path: "/",
        summary: "The web page",
        responses: &[(200, "HTML")],
    },
    Route {
        method: "get",
        path: "/static/{name}",
        summary: "The web page's script and style",
        responses: &[(200, "file"), (404, "no such file")],
    },
    Route {
        method: "get",
        path: "/healthz",
        summary: "Liveness, queue length, workers and the device models run on (no key needed)",
        responses: &[(200, "ok")],
    },
    Route {
        method: "get",
        path: "/metrics",
        summary: "Prometheus metrics",
        responses: &[(200, "metrics")],
    },
];

fn handler(method: &str, path: &str) -> MethodRouter<AppState> {
    match (method, path) {
        ("post", "/api/upload") => post(upload::upload).layer(DefaultBodyLimit::disable()),
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
        ("get", "/api/openapi.json") => get(meta::openapi),
        ("get", "/healthz") => get(meta::health),
        ("get", "/metrics") => get(meta::metrics),
        _ => unreachable!("every route in ROUTES has a handler: {method} {path}"),
    }
}

pub fn router(app: AppState) -> Router {
    let mut router: Router<AppState> = Router::new();
    for r in ROUTES {
        router = router.route(r.path, handler(r.method, r.path));
    }
    router
        .fallback(|| async { Problem::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .layer(middleware::from_fn_with_state(
            app.clone(),
            super::auth::require_key,
        ))
        .layer(middleware::from_fn_with_state(app.clone(), log_request))
        .with_state(app)
}

/// One log line per request, with an id that is also returned as `X-Request-Id`.
async fn log_request(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let started = Instant::now();
    let mut response = next.run(req).await.into_response();
    let status = response.status().as_u16();
    app.metrics.requests[(status as usize / 100).clamp(1, 5) - 1].fetch_add(1, Ordering::Relaxed);
    tracing::info!(request_id = %id, %method, %path, status, ms = started.elapsed().as_millis() as u64, "request");
    if let Ok(v) = id.parse() {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}
