//! `POST /api/images`: one still image (PNG, JPEG or WebP, as `image`), upscaled now with the
//! upload's settings and sent back in its own format (16-bit PNG kept at 16 bits, alpha
//! kept, EXIF orientation applied, ICC profile carried over). It runs in this process like a
//! preview, on the CPU and one at a time: an image takes seconds; a video goes through a
//! task.

use axum::body::Body;
use axum::extract::{Multipart, State};
use axum::http::header;
use axum::response::Response;
use axum::Extension;
use vsr_cuda::DeviceRequest;
use vsr_media::code::Code;
use vsr_media::enhance::prepare;
use vsr_media::picture::{self, Format};

use super::upload::{check_settings, parse_settings};
use crate::auth::Owner;
use crate::problem::Problem;
use crate::store::InputFacts;
use crate::AppState;

pub async fn upscale(
    State(app): State<AppState>,
    Extension(_owner): Extension<Owner>,
    mut form: Multipart,
) -> Result<Response, Problem> {
    // An upload slot, as a video's takes: refused at once when all are taken.
    let _slot = app
        .uploads
        .clone()
        .try_acquire_owned()
        .map_err(|_| Problem::busy("uploads"))?;
    let bad =
        |e: axum::extract::multipart::MultipartError| Problem::new(Code::BadUpload, e.body_text());
    let reading = async {
        let (mut settings_text, mut image) = (None, None);
        while let Some(field) = form.next_field().await.map_err(bad)? {
            match field.name().unwrap_or("") {
                "settings" => settings_text = Some(field.text().await.map_err(bad)?),
                "image" | "file" => {
                    let name = field.file_name().unwrap_or("image.png").to_string();
                    image = Some((name, field.bytes().await.map_err(bad)?));
                }
                _ => {}
            }
        }
        Ok::<_, Problem>((settings_text, image))
    };
    let deadline = app.config.http.upload_timeout();
    let (settings_text, image) =
        tokio::time::timeout(deadline, reading)
            .await
            .map_err(|_| {
                Problem::new(
                    Code::UploadTimeout,
                    format!("the image did not arrive within {} s", deadline.as_secs()),
                )
            })??;
    let (name, bytes) = image.ok_or_else(|| {
        Problem::bad_field(
            Code::MissingImage,
            "image",
            "the form has no `image` file field",
        )
    })?;
    let settings = parse_settings(settings_text.as_deref())?;
    let format = Format::of_path(std::path::Path::new(&name)).unwrap_or(Format::Png);
    let ext = match format {
        Format::Png => "png",
        Format::Jpeg => "jpg",
        Format::Webp => "webp",
    };

    // Decoded from a file of its own (the decoder guesses the format from the content).
    let scratch = tempfile::Builder::new()
        .prefix(".image-")
        .tempdir_in(&app.config.upload_folder)
        .map_err(Problem::internal)?;
    let (input, output) = (
        scratch.path().join("in"),
        scratch.path().join(format!("out.{ext}")),
    );
    tokio::fs::write(&input, &bytes)
        .await
        .map_err(Problem::internal)?;
    let _probe = app.probe_slot().await?;
    let decode_from = input.clone();
    let source = tokio::task::spawn_blocking(move || picture::read(&decode_from))
        .await
        .map_err(Problem::internal)?
        .map_err(|e| {
            tracing::info!(error = %e, "an uploaded image is unreadable");
            Problem::new(
                Code::UnreadableMedia,
                format!("{name} is not a PNG, JPEG or WebP image that can be read"),
            )
        })?;
    let facts = InputFacts {
        width: source.width() as u32,
        height: source.height() as u32,
        fps: 0.0,
        frames: 1,
        duration: 0.0,
    };
    let checked = check_settings(&app, settings, &facts).await?;
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
    let mime = match format {
        Format::Png => "image/png",
        Format::Jpeg => "image/jpeg",
        Format::Webp => "image/webp",
    };
    let disposition = super::attachment(&name, "image", (result.0 as u64, result.1 as u64), ext);
    tracing::info!(models = ?checked.models, width = result.0, height = result.1, "image upscaled");
    Response::builder()
        .header(header::CONTENT_TYPE, mime)
        .header(header::CONTENT_DISPOSITION, disposition)
        .header("x-vsr-models", checked.models.join(","))
        .body(Body::from(body))
        .map_err(Problem::internal)
}
