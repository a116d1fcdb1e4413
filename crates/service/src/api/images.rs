//! `POST /api/images`: one still image (PNG, JPEG or WebP, as `image`), upscaled now with the
//! upload's settings and sent back in its own format (16-bit PNG kept at 16 bits, alpha
//! kept, EXIF orientation applied, ICC profile carried over). It runs in this process like a
//! preview, on the CPU and one at a time: an image takes seconds; a video goes through a
//! task.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::response::Response;
use axum::Extension;
use vsr_cuda::DeviceRequest;
use vsr_media::code::Code;
use vsr_media::enhance::prepare;
use vsr_media::image::ImageError;
use vsr_media::picture;

use super::form::{self, too_large, Form, MAX_SETTINGS_BYTES};
use super::upload::{check_settings, client_name, parse_settings};
use crate::auth::Owner;
use crate::problem::Problem;
use crate::store::InputFacts;
use crate::AppState;

pub async fn upscale(
    State(app): State<AppState>,
    Extension(_owner): Extension<Owner>,
    request: Request,
) -> Result<Response, Problem> {
    // An upload slot, as a video's takes: refused at once when all are taken.
    let _slot = app
        .uploads
        .clone()
        .try_acquire_owned()
        .map_err(|_| Problem::busy("uploads"))?;
    let mut form = Form::of(request, &app.config.http).await?;
    let limits = &app.config.http;
    let (settings_text, image) = form
        .read(limits, async |form| receive(&app, form).await)
        .await?;
    let (name, bytes) = image.ok_or_else(|| {
        Problem::bad_field(
            Code::MissingImage,
            "image",
            "the form has no `image` file field",
        )
    })?;
    let settings = parse_settings(settings_text.as_deref())?;

    // Decoded from a file of its own (the decoder guesses the format from the content).
    let scratch = tempfile::Builder::new()
        .prefix(".image-")
        .tempdir_in(&app.config.upload_folder)
        .map_err(Problem::internal)?;
    let input = scratch.path().join("in");
    tokio::fs::write(&input, &bytes)
        .await
        .map_err(Problem::internal)?;
    let _probe = app.probe_slot().await?;
    let decode_from = input.clone();
    let source = tokio::task::spawn_blocking(move || picture::read(&decode_from))
        .await
        .map_err(Problem::internal)?
        .map_err(|e| {
            tracing::info!(error = %e, "an uploaded image is refused");
            let detail = match e {
                ImageError::Animated { .. } => {
                    format!("{name} is an animation; only still pictures are upscaled here")
                }
                _ => format!("{name} is not a PNG, JPEG or WebP image that can be read"),
            };
            Problem::new(e.code(), detail)
        })?;
    let facts = InputFacts {
        width: source.width() as u32,
        height: source.height() as u32,
        fps: 0.0,
        frames: 1,
        duration: 0.0,
    };
    let checked = check_settings(&app, settings, &facts).await?;
    // The result in the format the content was in, whatever the file was called.
    let (format, ext) = (source.format, source.format.extension());
    let output = scratch.path().join(format!("out.{ext}"));
    let _turn = app.previews.acquire().await.map_err(Problem::internal)?;
    let (base, settings) = (app.base.clone(), checked.settings.clone());
    // On the CPU, as previews: the GPU belongs to the workers.
    let options = app.config.run_options().map_err(Problem::internal)?;
    let written = output.clone();
    let result = tokio::task::spawn_blocking(move || -> Result<(usize, usize), Problem> {
        let prepared =
            prepare(&settings, &base, DeviceRequest::Cpu, options).map_err(Problem::internal)?;
        let color = prepared
            .enhancer
            .process(&source.color)
            .map_err(Problem::internal)?;
        let result = source.with_color(color);
        picture::write(&written, &result).map_err(Problem::internal)?;
        Ok((result.width(), result.height()))
    })
    .await
    .map_err(Problem::internal)??;
    let body = tokio::fs::read(&output).await.map_err(Problem::internal)?;
    let disposition = super::attachment(&name, "image", (result.0 as u64, result.1 as u64), ext);
    tracing::info!(models = ?checked.models, width = result.0, height = result.1, "image upscaled");
    Response::builder()
        .header(header::CONTENT_TYPE, format.mime())
        .header(header::CONTENT_DISPOSITION, disposition)
        .header("x-vsr-models", checked.models.join(","))
        .body(Body::from(body))
        .map_err(Problem::internal)
}

/// Reads the form: the settings and the one image (in memory: an image is at most
/// `MAX_CONTENT_LENGTH`), every step under the body-idle timeout; unknown parts read past.
async fn receive(
    app: &AppState,
    form: &mut Form,
) -> Result<(Option<String>, Option<(String, Vec<u8>)>), Problem> {
    let (idle, max) = (form.idle, app.config.max_content_length);
    let (mut settings_text, mut image) = (None, None);
    while let Some(mut field) = form.next_part().await? {
        match field.name().unwrap_or("") {
            "settings" => {
                settings_text = Some(form::text(&mut field, idle, MAX_SETTINGS_BYTES).await?)
            }
            "image" | "file" => {
                if image.is_some() {
                    return Err(Problem::new(
                        Code::BadUpload,
                        "the form has more than one image part; send one image per request",
                    ));
                }
                let name = client_name(&field, "image.png");
                let cap = usize::try_from(max).unwrap_or(usize::MAX);
                let bytes = form::bytes(&mut field, idle, cap, || too_large(max)).await?;
                image = Some((name, bytes));
            }
            _ => form::skip(&mut field, idle).await?,
        }
    }
    Ok((settings_text, image))
}
