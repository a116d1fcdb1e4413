//! About the server: models, health, Prometheus metrics and the OpenAPI description.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};
use vsr_cuda::Device;

use super::ROUTES;
use crate::store::Status;
use crate::AppState;
use vsr_media::settings::{Preset, SCALES};

pub async fn models(State(app): State<AppState>) -> Json<Value> {
    let mut models: Vec<Value> = app
        .catalog
        .models
        .iter()
        .map(|m| {
            json!({
                "name": m.name, "family": m.family, "scale": m.scale, "denoise": m.denoise,
                "licence": m.licence, "installed": vsr_media::fetch::is_installed(&app.base, m),
            })
        })
        .collect();
    // Models the operator installed: offered by name (the scale is the model's own).
    models.extend(
        vsr_media::model_ref::ModelRef::custom_names(&app.base)
            .into_iter()
            .map(
                |name| json!({"name": name, "family": "custom", "scale": null, "installed": true}),
            ),
    );
    let presets: Vec<Value> = Preset::ALL
        .iter()
        .map(|p| json!({"name": p.name(), "summary": p.summary(), "models": {"2": p.base_model(2), "3": p.base_model(3), "4": p.base_model(4)}}))
        .collect();
    Json(json!({"models": models, "presets": presets, "scales": SCALES}))
}

pub async fn health(State(app): State<AppState>) -> Json<Value> {
    let db = app.store.count_waiting().await;
    Json(json!({
        "status": if db.is_ok() { "ok" } else { "degraded" },
        "queued": db.unwrap_or(-1),
        "workers": app.config.workers,
        "device": match &app.device.device {
            Device::Cpu => "cpu".to_string(),
            Device::Cuda(gpu) => format!("cuda:{} ({})", gpu.index, gpu.name),
        },
        "device_reason": app.device.reason,
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

pub async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    let mut out = String::from("# HELP vsr_tasks Tasks by status.\n# TYPE vsr_tasks gauge\n");
    let counts = app.store.count_by_status().await.unwrap_or_default();
    for &status in Status::ALL {
        let n = counts.iter().find(|(s, _)| *s == status).map_or(0, |c| c.1);
        out += &format!("vsr_tasks{{status=\"{}\"}} {n}\n", status.as_str());
    }
    let m = &app.metrics;
    out += "# HELP vsr_http_requests_total HTTP requests by status class.\n# TYPE vsr_http_requests_total counter\n";
    for (i, class) in ["1xx", "2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
        out += &format!(
            "vsr_http_requests_total{{class=\"{class}\"}} {}\n",
            m.requests[i].load(Ordering::Relaxed)
        );
    }
    out += &format!(
        "# HELP vsr_upload_bytes_total Bytes of video uploaded.\n# TYPE vsr_upload_bytes_total counter\nvsr_upload_bytes_total {}\n",
        m.upload_bytes.load(Ordering::Relaxed)
    );
    out += &format!(
        "# HELP vsr_workers Worker processes.\n# TYPE vsr_workers gauge\nvsr_workers {}\n",
        app.config.workers
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// OpenAPI 3.1, generated from the route table the router is built from.
pub async fn openapi() -> Json<Value> {
    let mut paths = serde_json::Map::new();
    for r in ROUTES {
        let path = paths.entry(r.path.to_string()).or_insert_with(|| json!({}));
        let mut responses = serde_json::Map::new();
        for (code, what) in r.responses {
            let mut resp = json!({"description": what});
            if *code >= 400 {
                resp["content"] = json!({"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}});
            }
            responses.insert(code.to_string(), resp);
        }
        let mut op = json!({"summary": r.summary, "responses": responses});
        if r.path.contains("{id}") {
            op["parameters"] = json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}]);
        }
        if r.path == "/api/upload" {
            op["requestBody"] = json!({"content": {"multipart/form-data": {"schema": {
                "type": "object", "required": ["video"],
                "properties": {"video": {"type": "string", "format": "binary"},
                               "settings": {"type": "string", "description": "JSON: scale, quality, denoiseLevel, preserveDetails, guideScale, model, codec, crf"}}}}}});
        }
        path[r.method] = op;
    }
    Json(json!({
        "openapi": "3.1.0",
        "info": {"title": "VSR video super-resolution", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "schemas": {"Problem": {"type": "object", "properties": {
                "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                "detail": {"type": "string"}, "code": {"type": "string"}, "field": {"type": "string"}}}},
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        },
        "security": [{"apiKey": []}],
    }))
}
