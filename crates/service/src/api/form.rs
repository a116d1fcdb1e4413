//! Reading a multipart form from an untrusted client, for the routes that take one
//! (`/api/upload`, `/api/images`): part by part, each step under the body-idle timeout (a
//! client that pauses gets 408 `upload_stalled`, not a handler held open), a bounded number of
//! parts with bounded headers, text parts capped, and the framework's errors told in our own
//! words. The whole-body limit (`MAX_CONTENT_LENGTH`) is the router's, per route.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::multipart::{Field, MultipartError};
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::StatusCode;
use futures_util::StreamExt;
use vsr_media::code::Code;

use crate::config::HttpLimits;
use crate::problem::Problem;

/// Room in the whole body for the form's boundaries, headers and text parts.
pub const FORM_OVERHEAD: u64 = 64 * 1024;
/// Parts in one form; browsers add none of their own to ours.
const MAX_PARTS: usize = 16;
/// Longest stretch of body a part's headers may take (they are a few hundred bytes; the
/// rest is slack for the chunk they arrive in). The form parser keeps a part's headers whole
/// until they end, so without this a client could make it hold `MAX_CONTENT_LENGTH`.
const MAX_PART_HEAD_BYTES: u64 = 1 << 20;
/// Largest `settings` part: a JSON object of a dozen fields is a few hundred bytes.
pub const MAX_SETTINGS_BYTES: usize = 16 * 1024;
/// Largest yes/no part (`start`).
const MAX_FLAG_BYTES: usize = 16;

/// How many bytes the client may still send before the headers of the part being read end;
/// `u64::MAX` while a part's content is read (the whole-body limit bounds that).
struct HeadBudget {
    remaining: AtomicU64,
    /// Set when the budget ran out, so the parser's error can be told as what it is.
    exceeded: AtomicBool,
}

impl HeadBudget {
    fn set(&self, bytes: u64) {
        self.remaining.store(bytes, Ordering::Relaxed);
    }

    /// Counts `n` bytes of body; false once the budget is gone.
    fn spend(&self, n: u64) -> bool {
        let left = self.remaining.load(Ordering::Relaxed);
        if left == u64::MAX {
            return true;
        }
        self.remaining
            .store(left.saturating_sub(n), Ordering::Relaxed);
        let ok = n <= left;
        if !ok {
            self.exceeded.store(true, Ordering::Relaxed);
        }
        ok
    }
}

/// A request's multipart form, read one part at a time under the limits above.
pub struct Form {
    multipart: Multipart,
    /// The body's bytes counted against the headers of the part being read.
    budget: Arc<HeadBudget>,
    /// The longest pause allowed between two pieces of the body.
    pub idle: Duration,
    /// Parts read so far.
    parts: usize,
}

impl Form {
    /// The request's form (refused with 400 if it is not multipart), its body counted.
    pub async fn of(request: Request, limits: &HttpLimits) -> Result<Form, Problem> {
        let budget = Arc::new(HeadBudget {
            remaining: AtomicU64::new(MAX_PART_HEAD_BYTES),
            exceeded: AtomicBool::new(false),
        });
        let counting = budget.clone();
        let (parts, body) = request.into_parts();
        let counted = body.into_data_stream().map(move |chunk| {
            let chunk = chunk?;
            if counting.spend(chunk.len() as u64) {
                Ok(chunk)
            } else {
                Err(axum::Error::new("a part's headers are too long"))
            }
        });
        let request = Request::from_parts(parts, Body::from_stream(counted));
        let multipart = Multipart::from_request(request, &()).await.map_err(|e| {
            tracing::debug!(error = %e.body_text(), "not a multipart form");
            Problem {
                status: e.status(),
                ..Problem::new(
                    Code::BadUpload,
                    "the body is not a multipart/form-data form with its boundary",
                )
            }
        })?;
        Ok(Form {
            multipart,
            budget,
            idle: limits.body_idle_timeout(),
            parts: 0,
        })
    }

    /// The next part, or `None` at the form's end.
    pub async fn next_part(&mut self) -> Result<Option<Field<'_>>, Problem> {
        self.budget.set(MAX_PART_HEAD_BYTES);
        let next = within(self.idle, self.multipart.next_field()).await;
        if self.budget.exceeded.load(Ordering::Relaxed) {
            return Err(Problem::new(
                Code::TooLarge,
                format!("a part's headers are limited to {MAX_PART_HEAD_BYTES} bytes"),
            ));
        }
        let Some(field) = next? else {
            return Ok(None);
        };
        self.budget.set(u64::MAX);
        self.parts += 1;
        if self.parts > MAX_PARTS {
            return Err(Problem::new(
                Code::BadUpload,
                format!("the form has more than {MAX_PARTS} parts"),
            ));
        }
        Ok(Some(field))
    }

    /// Reads `step` (a reading of this form) within the upload timeout; if it fails, the rest
    /// of the body is drained before the refusal is answered ([`Form::discard`]), unless the
    /// client stalled or sent too much.
    pub async fn read<T>(
        &mut self,
        limits: &HttpLimits,
        step: impl AsyncFnOnce(&mut Form) -> Result<T, Problem>,
    ) -> Result<T, Problem> {
        let deadline = limits.upload_timeout();
        match tokio::time::timeout(deadline, step(self)).await {
            Err(_) => Err(upload_timeout(deadline)),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(refusal)) => Err(self.refuse(refusal, limits).await),
        }
    }

    /// `refusal`, once the rest of the body is read past: a client still sending would see a
    /// reset connection instead of the answer. Not after a stall, a timeout or a body over
    /// the limit: those are not read further.
    pub async fn refuse(&mut self, refusal: Problem, limits: &HttpLimits) -> Problem {
        let unread = [Code::UploadStalled, Code::UploadTimeout, Code::TooLarge];
        if !unread.contains(&refusal.code) {
            self.discard(limits).await;
        }
        refusal
    }

    /// Reads and drops the rest of a request answered before its body (a replay, a full
    /// queue, a full disk), within the upload's timeouts (the whole-body limit bounds its
    /// size): clients that send the whole body before reading the answer (browsers,
    /// reqwest) would otherwise see a reset connection instead of the answer.
    async fn discard(&mut self, limits: &HttpLimits) {
        let idle = self.idle;
        let drain = async {
            while let Ok(Some(mut field)) = self.next_part().await {
                if skip(&mut field, idle).await.is_err() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(limits.upload_timeout(), drain).await;
    }
}

/// One step of reading the form, failed with 408 if the client pauses longer than `idle`.
pub async fn within<T>(
    idle: Duration,
    step: impl Future<Output = Result<T, MultipartError>>,
) -> Result<T, Problem> {
    match tokio::time::timeout(idle, step).await {
        Ok(result) => result.map_err(bad_multipart),
        Err(_) => Err(Problem::new(
            Code::UploadStalled,
            format!("the upload paused for more than {} s", idle.as_secs()),
        )),
    }
}

/// Reads past a part's content (a part we do not keep; the whole-body limit bounds it).
pub async fn skip(field: &mut Field<'_>, idle: Duration) -> Result<(), Problem> {
    while within(idle, field.chunk()).await?.is_some() {}
    Ok(())
}

/// A part's content, refused with `too_large` past `cap` bytes instead of being read whole.
pub async fn bytes(
    field: &mut Field<'_>,
    idle: Duration,
    cap: usize,
    too_large: impl Fn() -> Problem,
) -> Result<Vec<u8>, Problem> {
    let mut bytes = Vec::new();
    while let Some(chunk) = within(idle, field.chunk()).await? {
        if bytes.len() + chunk.len() > cap {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// A text part of at most `cap` bytes (413 past it, naming the part).
pub async fn text(field: &mut Field<'_>, idle: Duration, cap: usize) -> Result<String, Problem> {
    let name = field.name().unwrap_or("").to_string();
    let too_large = || {
        Problem::bad_field(
            Code::TooLarge,
            name.clone(),
            format!("the `{name}` part is limited to {cap} bytes"),
        )
    };
    let bytes = bytes(field, idle, cap, too_large).await?;
    String::from_utf8(bytes).map_err(|_| {
        Problem::bad_field(Code::BadUpload, name.clone(), "the part is not UTF-8 text")
    })
}

/// A yes/no part: `true`, `1`, `yes`, `on` or `false`, `0`, `no`, `off`, in any case; anything
/// else is refused (400 naming the part) rather than read as one or the other.
pub async fn flag(field: &mut Field<'_>, idle: Duration) -> Result<bool, Problem> {
    let name = field.name().unwrap_or("").to_string();
    let text = text(field, idle, MAX_FLAG_BYTES).await?;
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(Problem::bad_field(
            Code::BadUpload,
            name,
            "must be true or false (also 1/0, yes/no, on/off)",
        )),
    }
}

/// The answer to an upload that did not arrive whole within `deadline`.
fn upload_timeout(deadline: Duration) -> Problem {
    Problem::new(
        Code::UploadTimeout,
        format!("the upload did not arrive within {} s", deadline.as_secs()),
    )
}

/// The answer to a body over `MAX_CONTENT_LENGTH` (`max` bytes).
pub fn too_large(max: u64) -> Problem {
    Problem::new(
        Code::TooLarge,
        format!(
            "uploads are limited to {} (MAX_CONTENT_LENGTH)",
            human_bytes(max)
        ),
    )
}

/// `bytes` as people read sizes: whole MiB or KiB when it is one, else bytes.
fn human_bytes(bytes: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;
    match bytes {
        b if b >= MIB && b % MIB == 0 => format!("{} MiB", b / MIB),
        b if b >= 10 * MIB => format!("{:.1} MiB", b as f64 / MIB as f64),
        b if b >= KIB && b % KIB == 0 => format!("{} KiB", b / KIB),
        b => format!("{b} bytes"),
    }
}

/// The form parser's error in our words: a body over the route's limit is 413 `too_large`,
/// anything else a malformed form (the parser's own text goes to the log).
fn bad_multipart(e: MultipartError) -> Problem {
    match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => Problem::new(
            Code::TooLarge,
            "the request is larger than MAX_CONTENT_LENGTH allows",
        ),
        status => {
            tracing::debug!(error = %e.body_text(), "malformed form");
            Problem {
                status,
                ..Problem::new(
                    Code::BadUpload,
                    "the form is malformed or ended early (multipart/form-data)",
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(104_857_600), "100 MiB");
        assert_eq!(human_bytes(200_000), "200000 bytes");
        assert_eq!(human_bytes(64 * 1024), "64 KiB");
        assert_eq!(human_bytes(50_000_000), "47.7 MiB");
        assert_eq!(human_bytes(0), "0 bytes");
    }
}
