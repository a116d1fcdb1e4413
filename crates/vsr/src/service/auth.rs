//! API keys and signed download links. Keys are compared through their SHA-256 digests in
//! constant time, so neither their content nor their length leaks through timing.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::problem::Problem;
use super::AppState;

/// Who is calling: the fingerprint of their API key, or `None` when keys are not in use.
#[derive(Debug, Clone)]
pub struct Owner(pub Option<String>);

impl Owner {
    /// Whether this caller may see a task created by `owner`.
    pub fn may_see(&self, owner: &Option<String>) -> bool {
        self.0.is_none() || &self.0 == owner
    }
}

/// Digests of the configured keys.
pub struct Keys(Vec<[u8; 32]>);

impl Keys {
    pub fn new(keys: &[String]) -> Keys {
        Keys(
            keys.iter()
                .map(|k| Sha256::digest(k.as_bytes()).into())
                .collect(),
        )
    }

    pub fn enabled(&self) -> bool {
        !self.0.is_empty()
    }

    /// The fingerprint of `given` if it is one of the keys.
    fn check(&self, given: &str) -> Option<String> {
        let digest: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        // Every key is compared in full, whichever matches.
        let mut found = false;
        for key in &self.0 {
            found |= key
                .iter()
                .zip(&digest)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        }
        found.then(|| hex(&digest[..8]))
    }
}

/// Requires a key (`X-API-Key: KEY` or `Authorization: Bearer KEY`) when keys are configured.
/// Health checks pass freely; downloads may instead carry a valid signature (checked there).
pub async fn require_key(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let open = path == "/healthz" || !path.starts_with("/api/") && path != "/metrics";
    let signed = path.starts_with("/api/download/")
        && req.uri().query().is_some_and(|q| q.contains("signature="));
    let given = req
        .headers()
        .get("x-api-key")
        .or_else(|| req.headers().get(axum::http::header::AUTHORIZATION))
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim().to_string())
        // EventSource cannot send headers: `?api_key=` works too.
        .or_else(|| query_param(req.uri().query(), "api_key"));
    let owner = match (app.keys.enabled(), given) {
        (false, _) => Owner(None),
        (true, Some(key)) => match app.keys.check(&key) {
            Some(fingerprint) => Owner(Some(fingerprint)),
            None => return unauthorized("the API key is not valid"),
        },
        (true, None) if open || signed => Owner(None),
        (true, None) => return unauthorized("this server needs an API key (X-API-Key header)"),
    };
    req.extensions_mut().insert(owner);
    next.run(req).await
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| percent_decode(v))
}

/// `application/x-www-form-urlencoded` value decoding (`+` is a space).
fn percent_decode(v: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', h, l]) => hex(*h).zip(hex(*l)).map(|(h, l)| h * 16 + l),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, b) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn unauthorized(detail: &str) -> Response {
    Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", detail).into_response()
}

/// `expires` (Unix seconds) and signature for a download link to `task_id`.
pub fn sign(secret: &[u8], task_id: &str, expires: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length works");
    mac.update(format!("{task_id}:{expires}").as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// Whether a link's signature is right and unexpired.
pub fn verify(secret: &[u8], task_id: &str, expires: i64, signature: &str) -> bool {
    let Ok(given) = (0..signature.len() / 2)
        .map(|i| u8::from_str_radix(signature.get(2 * i..2 * i + 2).unwrap_or("x"), 16))
        .collect::<Result<Vec<u8>, _>>()
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length works");
    mac.update(format!("{task_id}:{expires}").as_bytes());
    expires * 1000 > super::store::now_ms() && mac.verify_slice(&given).is_ok()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_signatures() {
        let keys = Keys::new(&["alpha".into(), "beta".into()]);
        assert!(keys.check("alpha").is_some());
        assert_ne!(keys.check("alpha"), keys.check("beta"));
        assert!(keys.check("alph").is_none() && keys.check("").is_none());
        let later = super::super::store::now_ms() / 1000 + 60;
        let sig = sign(b"s3cret", "task", later);
        assert!(verify(b"s3cret", "task", later, &sig));
        assert!(!verify(b"other", "task", later, &sig));
        assert!(!verify(b"s3cret", "task2", later, &sig));
        assert!(!verify(
            b"s3cret",
            "task",
            later - 120,
            &sign(b"s3cret", "task", later - 120)
        ));
        assert!(!verify(b"s3cret", "task", later, "zz"));
        assert_eq!(percent_decode("a%20b+c%2B%3D%zz%"), "a b c+=%zz%");
        assert_eq!(
            query_param(Some("x=1&api_key=k%26y"), "api_key").as_deref(),
            Some("k&y")
        );
    }
}
