//! About the server: models, health, Prometheus metrics and the OpenAPI description (built
//! from the route table the router is built from, with each body's schema from its type).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::openapi::{RefOr, Schema};
use utoipa::ToSchema;
use vsr_media::settings::{Preset, SCALES};

use super::ROUTES;
use crate::AppState;

/// A model the server offers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelView {
    pub name: String,
    /// `custom` for models the operator installed.
    pub family: String,
    /// Its own scale (unknown for custom models until loaded).
    pub scale: Option<u32>,
    /// The denoise variant (catalog models).
    pub denoise: Option<String>,
    pub licence: Option<String>,
    pub installed: bool,
}

/// A quality preset and the model it starts from at each scale.
#[derive(Debug, Serialize, ToSchema)]
pub struct PresetView {
    pub name: String,
    pub summary: String,
    pub models: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelsView {
    pub models: Vec<ModelView>,
    pub presets: Vec<PresetView>,
    pub scales: Vec<u32>,
}

pub async fn models(State(app): State<AppState>) -> Json<ModelsView> {
    let mut models: Vec<ModelView> = app
        .catalog
        .models
        .iter()
        .map(|m| ModelView {
            name: m.name.clone(),
            family: m.family.clone(),
            scale: Some(m.scale as u32),
            denoise: Some(m.denoise.clone()),
            licence: Some(m.licence.clone()),
            installed: vsr_media::fetch::is_installed(&app.base, m),
        })
        .collect();
    // Models the operator installed: offered by name (the scale is the model's own).
    models.extend(
        vsr_media::model_ref::ModelRef::custom_names(&app.base)
            .into_iter()
            .map(|name| ModelView {
                name,
                family: "custom".into(),
                scale: None,
                denoise: None,
                licence: None,
                installed: true,
            }),
    );
    let presets = Preset::ALL
        .iter()
        .map(|p| PresetView {
            name: p.name().to_string(),
            summary: p.summary().to_string(),
            models: [2, 3, 4]
                .iter()
                .map(|&s| (s.to_string(), p.base_model(s).to_string()))
                .collect(),
        })
        .collect();
    Json(ModelsView {
        models,
        presets,
        scales: SCALES.to_vec(),
    })
}

/// Liveness and what the operator wants to see at a glance.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` when the task store does not answer.
    pub status: String,
    /// Tasks waiting (-1 when the store does not answer).
    pub queued: i64,
    pub workers: usize,
    /// Workers anywhere whose heartbeat is recent (this server's and those on their own);
    /// who and where they are is `/api/workers`, behind the API key.
    pub live_workers: usize,
    /// Where models run: `cpu` or `cuda:N (name)`.
    pub device: String,
    pub device_reason: String,
    pub version: String,
}

/// A worker whose heartbeat is recent.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkerView {
    pub id: String,
    /// The machine it runs on, and its process id there.
    pub host: String,
    pub pid: i64,
    /// Where it runs models.
    pub device: String,
    /// Started on its own (`vsr worker --database`) rather than by a server.
    pub standalone: bool,
    /// The task it is running.
    pub task: Option<String>,
    /// When it started and when its last heartbeat came (ms since the Unix epoch).
    pub started_at: i64,
    pub last_heartbeat: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkersView {
    pub workers: Vec<WorkerView>,
}

/// Workers whose heartbeat came within a few beats (empty when the store does not answer).
async fn live_workers(app: &AppState) -> Result<Vec<WorkerView>, crate::store::StoreError> {
    let since = crate::store::now_ms() - 3 * crate::store::HEARTBEAT.as_millis() as i64;
    Ok(app
        .store
        .workers(since)
        .await?
        .into_iter()
        .map(|w| WorkerView {
            id: w.id.to_string(),
            host: w.host,
            pid: w.pid,
            device: w.device,
            standalone: w.standalone,
            task: w.task.map(|t| t.to_string()),
            started_at: w.started_at,
            last_heartbeat: w.seen_at,
        })
        .collect())
}

/// `GET /api/workers`: every live worker, on any machine.
pub async fn workers(
    State(app): State<AppState>,
) -> Result<Json<WorkersView>, crate::problem::Problem> {
    Ok(Json(WorkersView {
        workers: live_workers(&app).await?,
    }))
}

pub async fn health(State(app): State<AppState>) -> Json<Health> {
    let db = app.store.count_waiting().await;
    Json(Health {
        live_workers: live_workers(&app).await.map_or(0, |w| w.len()),
        status: if db.is_ok() { "ok" } else { "degraded" }.into(),
        queued: db.unwrap_or(-1),
        workers: app.config.workers,
        device: crate::device_name(&app.device),
        device_reason: app.device.reason.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

pub async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    let counts = app.store.count_by_status().await.unwrap_or_default();
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        app.metrics.encode(&counts),
    )
}

/// Adds a body type's schema, and those it refers to, to `all`; returns its name.
pub type BodySchema = fn(&mut Vec<(String, RefOr<Schema>)>) -> String;

/// The [`BodySchema`] of `T`, from its `ToSchema` derive.
pub fn schema<T: ToSchema>(all: &mut Vec<(String, RefOr<Schema>)>) -> String {
    let name = T::name().into_owned();
    all.push((name.clone(), T::schema()));
    T::schemas(all);
    name
}

/// OpenAPI 3.1, generated from the route table the router is built from.
pub async fn openapi() -> Json<Value> {
    let mut schemas = Vec::new();
    let problem = schema::<crate::problem::ProblemBody>(&mut schemas);
    let mut paths = serde_json::Map::new();
    for r in ROUTES {
        let path = paths.entry(r.path.to_string()).or_insert_with(|| json!({}));
        let body = r.body.map(|b| b(&mut schemas));
        let mut responses = serde_json::Map::new();
        let reference =
            |name: &str| json!({"schema": {"$ref": format!("#/components/schemas/{name}")}});
        // Routes that list only their errors answer 200 with their body.
        let listed_ok = r.responses.iter().any(|(c, _)| (200..300).contains(c));
        let ok: &[(u16, &str)] = if listed_ok { &[] } else { &[(200, "ok")] };
        for (code, what) in r.responses.iter().chain(ok) {
            let mut resp = json!({"description": what});
            if *code >= 400 {
                resp["content"] = json!({"application/problem+json": reference(&problem)});
            } else if let (Some(name), 200..=299) = (&body, *code) {
                resp["content"] = json!({"application/json": reference(name)});
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
                               "settings": {"type": "string", "description": "JSON: scale, quality, denoiseLevel, preserveDetails, guideScale, model, codec, crf, temporalStability (off, auto, strong)"}}}}}});
        }
        path[r.method] = op;
    }
    let components: serde_json::Map<String, Value> = schemas
        .into_iter()
        .map(|(name, s)| (name, serde_json::to_value(s).unwrap_or(Value::Null)))
        .collect();
    Json(json!({
        "openapi": "3.1.0",
        "info": {"title": "VSR video super-resolution", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        },
        "security": [{"apiKey": []}],
    }))
}
