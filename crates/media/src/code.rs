//! Every stable error code VSR gives, in one table: the text clients and scripts match on and
//! the HTTP status the API answers with. The command line prints the text in brackets, the
//! pipeline and the task store carry the value, the API puts it in `code`. Nothing decides by
//! comparing code strings; a code's text never changes once released.

use std::fmt;

macro_rules! codes {
    ($($variant:ident = $text:literal, $status:literal;)*) => {
        /// A stable error code (see the module docs).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code {
            $($variant,)*
        }

        impl Code {
            /// Every code, in table order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The code as clients see it.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $text,)*
                }
            }

            /// The HTTP status the API answers this code with.
            pub const fn http_status(self) -> u16 {
                match self {
                    $(Code::$variant => $status,)*
                }
            }
        }
    };
}

codes! {
    // The request or its settings.
    BadRequest = "bad_request", 400;
    InvalidSettings = "invalid_settings", 400;
    ModelUnavailable = "model_unavailable", 400;
    OutputTooLarge = "output_too_large", 400;
    BadUpload = "bad_upload", 400;
    MissingVideo = "missing_video", 400;
    MissingImage = "missing_image", 400;
    BadLink = "bad_link", 400;
    Unauthorized = "unauthorized", 401;
    BadSignature = "bad_signature", 403;
    LinkExpired = "link_expired", 403;
    CrossSiteRequest = "cross_site_request", 403;
    MetricsKeyRequired = "metrics_key_required", 403;
    HostNotAllowed = "host_not_allowed", 403;
    TaskNotFound = "task_not_found", 404;
    NotFound = "not_found", 404;
    MethodNotAllowed = "method_not_allowed", 405;
    RequestTimeout = "request_timeout", 408;
    UploadStalled = "upload_stalled", 408;
    UploadTimeout = "upload_timeout", 408;
    NotReady = "not_ready", 409;
    TaskFinished = "task_finished", 409;
    NotDraft = "not_draft", 409;
    Expired = "expired", 410;
    TooLarge = "too_large", 413;
    // The video.
    FileTooLarge = "file_too_large", 413;
    OverLimit = "over_limit", 413;
    UnsupportedMediaType = "unsupported_media_type", 415;
    NotAFile = "not_a_file", 415;
    EmptyFile = "empty_file", 415;
    PlaylistNotAllowed = "playlist_not_allowed", 415;
    UnreadableMedia = "unreadable_media", 415;
    NoVideoStream = "no_video_stream", 415;
    UnsupportedCodec = "unsupported_codec", 415;
    RangeNotSatisfiable = "range_not_satisfiable", 416;
    InvalidRequest = "invalid_request", 422;
    IdempotencyKeyReused = "idempotency_key_reused", 422;
    QueueFull = "queue_full", 429;
    // Running a job.
    DecodeFailed = "decode_failed", 500;
    EncodeFailed = "encode_failed", 500;
    ModelFailed = "model_failed", 500;
    // A model by path whose conventions its graph does not settle, or a config file's that
    // do not fit it: the operator's to give in MODEL_CONFIG_PATH.
    ModelConventions = "model_conventions", 500;
    ToolFailed = "tool_failed", 500;
    IoError = "io_error", 500;
    CudaUnavailable = "cuda_unavailable", 500;
    WorkerCrashed = "worker_crashed", 500;
    WorkerPanicked = "worker_panicked", 500;
    Cancelled = "cancelled", 409;
    // Another run of the command line is writing the same output file.
    OutputInUse = "output_in_use", 409;
    // The server.
    InternalError = "internal_error", 500;
    ServerBusy = "server_busy", 503;
    // The task database does not answer (down, unreachable, out of connections).
    StoreUnavailable = "store_unavailable", 503;
    // The storage holding uploads and results (an object store) does not answer.
    StorageUnavailable = "storage_unavailable", 503;
    InsufficientStorage = "insufficient_storage", 507;
}

impl Code {
    /// The code with this text, if there is one (for codes read back from storage).
    pub fn parse(text: &str) -> Option<Code> {
        Code::ALL.iter().copied().find(|c| c.as_str() == text)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl From<&vsr_cuda::DeviceError> for Code {
    fn from(_: &vsr_cuda::DeviceError) -> Code {
        Code::CudaUnavailable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for &code in Code::ALL {
            assert!(seen.insert(code.as_str()), "{code} twice");
            assert_eq!(Code::parse(code.as_str()), Some(code));
            assert!((400..600).contains(&code.http_status()), "{code}");
        }
        assert_eq!(Code::parse("no_such_code"), None);
    }
}
