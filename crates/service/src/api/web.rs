//! The web page: three files embedded in the binary (works offline, nothing to install). With
//! `web_dir` (`VSR_WEB_DIR`) set, they are read from that folder on each request instead, for
//! editing.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::AppState;

const FILES: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../web/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../web/style.css"),
    ),
];

pub async fn index(State(app): State<AppState>) -> Response {
    file(&app, "index.html")
}

pub async fn asset(State(app): State<AppState>, Path(name): Path<String>) -> Response {
    file(&app, &name)
}

fn file(app: &AppState, name: &str) -> Response {
    let Some((name, mime, embedded)) = FILES.iter().find(|(n, _, _)| *n == name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    // `name` is one of ours (looked up above), never the client's text.
    let body = app
        .config
        .web_dir
        .as_ref()
        .and_then(|dir| std::fs::read_to_string(dir.join(name)).ok())
        .unwrap_or_else(|| embedded.to_string());
    (
        [
            (header::CONTENT_TYPE, *mime),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}
