//! Who may do what: API keys, signed download links, the operator's metrics key and the
//! cross-site rule, each decided in one place here (docs/security.md is the threat model).
//!
//! Keys are compared through their SHA-256 digests in constant time, so neither their content
//! nor their length leaks through timing. A download is allowed for a key that owns the task
//! (or anyone on a server without keys) or for a valid, unexpired signature over the task id
//! and expiry; nothing else, and no shortcut by path or query text.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};
use vsr_media::code::Code;

use super::problem::Problem;
use super::AppState;

/// Who is calling, as the authentication layer established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// The server has no API keys: every caller may see every task.
    Anyone,
    /// A valid API key, by its fingerprint (the first 8 bytes of its SHA-256, in hex).
    Key(String),
    /// No key on a server that needs one. Reaches only the page, `/healthz` and downloads,
    /// where a signed link is then required.
    Anonymous,
}

impl Owner {
    /// The fingerprint recorded as a new task's owner, and the scope of task lists.
    pub fn fingerprint(&self) -> Option<&str> {
        match self {
            Owner::Key(k) => Some(k),
            Owner::Anyone | Owner::Anonymous => None,
        }
    }

    /// Whether this caller may see a task created by `owner`.
    pub fn may_see(&self, owner: &Option<String>) -> bool {
        match self {
            Owner::Anyone => true,
            Owner::Key(k) => owner.as_deref() == Some(k),
            Owner::Anonymous => false,
        }
    }
}

/// Digests of a set of keys.
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
        // Every key is compared in full and in constant time, whichever matches.
        let found = self
            .0
            .iter()
            .fold(Choice::from(0), |found, key| found | key.ct_eq(&digest));
        bool::from(found).then(|| hex(&digest[..8]))
    }
}

/// The key a request presents: `X-API-Key: KEY`, `Authorization: Bearer KEY`, or, for GET
/// only (EventSource cannot send headers), `?api_key=KEY`.
fn presented_key(req: &Request) -> Option<String> {
    header_key(req).or_else(|| {
        (req.method() == Method::GET)
            .then(|| query_param(req.uri().query(), "api_key"))
            .flatten()
    })
}

/// The key in `X-API-Key` or `Authorization: Bearer`.
fn header_key(req: &Request) -> Option<String> {
    req.headers()
        .get("x-api-key")
        .or_else(|| req.headers().get(header::AUTHORIZATION))
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim().to_string())
}

/// Whether the `Host` a request names is one this server answers to (see
/// `ServiceConfig::allowed_hosts`). Without the check, a page whose own name resolves to
/// 127.0.0.1 (DNS rebinding) would be same-origin with a keyless server on loopback.
fn host_allowed(config: &crate::config::ServiceConfig, headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST) else {
        return true; // HTTP/1.0 programs; browsers always send it
    };
    let Ok(host) = host.to_str() else {
        return false; // bytes no host name has
    };
    let Some(name) = host_name(host) else {
        return false; // not a name and port: no browser sends that
    };
    if !config.allowed_hosts.is_empty() {
        return config
            .allowed_hosts
            .iter()
            .any(|h| h == "*" || h.eq_ignore_ascii_case(name));
    }
    !is_loopback(&config.host) || is_loopback(name)
}

/// The name in a `Host` value, without its port (`[::1]:5000` -> `::1`); `None` unless the
/// value is a host name or address and an optional numeric port (`localhost:80@evil` is not).
fn host_name(host: &str) -> Option<&str> {
    let in_name = |b: u8| b.is_ascii_alphanumeric() || b"-._".contains(&b);
    let in_address = |b: u8| b.is_ascii_hexdigit() || b":.".contains(&b);
    let (name, port, valid): (_, _, &dyn Fn(u8) -> bool) = match host.strip_prefix('[') {
        Some(rest) => {
            let (address, after) = rest.split_once(']')?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':')?),
            };
            (address, port, &in_address)
        }
        None => match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port), &in_name),
            None => (host, None, &in_name),
        },
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    (port_ok && !name.is_empty() && name.bytes().all(valid)).then_some(name)
}

fn is_loopback(name: &str) -> bool {
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Paths a caller without a key reaches on a server with keys: the page and its files, the
/// health check, and downloads (which then need a valid signature).
fn open_to_anonymous(method: &Method, path: &str) -> bool {
    let page = !path.starts_with("/api/") && path != "/metrics";
    let download =
        (method == Method::GET || method == Method::HEAD) && path.starts_with("/api/download/");
    page || path == "/healthz" || download
}

/// Authenticates every request: sets the [`Owner`], guards `/metrics`, and refuses
/// state-changing requests a browser marks as cross-site unless they carry a key.
pub async fn authenticate(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    match admit(&app, &mut req) {
        Ok(()) => next.run(req).await,
        Err(refused) => answer_unread(req, *refused).await,
    }
}

/// The checks of [`authenticate`]: the request goes on (with its [`Owner`]), or the refusal.
fn admit(app: &AppState, req: &mut Request) -> Result<(), Box<Response>> {
    if !host_allowed(&app.config, req.headers()) {
        return Err(Box::new(
            Problem::new(
                Code::HostNotAllowed,
                "this server is not reached by that name (allowed_hosts, VSR_ALLOWED_HOSTS)",
            )
            .into_response(),
        ));
    }
    let given = presented_key(req);
    if req.uri().path() == "/metrics" {
        // Headers only: the operator's key never travels in a URL.
        return metrics_access(app, header_key(req).as_deref())
            .map_err(|p| Box::new(p.into_response()));
    }
    let owner = match (app.keys.enabled(), given) {
        (false, _) => Owner::Anyone,
        (true, Some(key)) => match app.keys.check(&key) {
            Some(fingerprint) => Owner::Key(fingerprint),
            None => return Err(Box::new(unauthorized("the API key is not valid"))),
        },
        (true, None) => Owner::Anonymous,
    };
    if owner == Owner::Anonymous && !open_to_anonymous(req.method(), req.uri().path()) {
        return Err(Box::new(unauthorized(
            "this server needs an API key (X-API-Key header)",
        )));
    }
    let changes_state = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if changes_state && !matches!(owner, Owner::Key(_)) && is_cross_site(req.headers()) {
        return Err(Box::new(
            Problem::new(
                Code::CrossSiteRequest,
                "the browser marked this request as coming from another site; send it from this \
             server's own page or with an API key",
            )
            .into_response(),
        ));
    }
    req.extensions_mut().insert(owner);
    Ok(())
}

/// Answers a refused request whose body was not read: the first 64 KiB of it are read and
/// dropped first (for at most 2 s), so that a client still sending a small form gets the
/// answer instead of a connection reset by unread data. A larger body is cut off: nothing
/// refused is received in full.
async fn answer_unread(req: Request, refused: Response) -> Response {
    let body = axum::body::to_bytes(req.into_body(), 64 << 10);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), body).await;
    refused
}

/// What the browser says about where a request comes from: `Sec-Fetch-Site` when present
/// (every current browser sends it), else an `Origin` that is not this host. Requests from
/// programs (curl, SDKs) send neither and are not affected.
fn is_cross_site(headers: &HeaderMap) -> bool {
    let get = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = get("sec-fetch-site") {
        // `none`: typed in the address bar or a bookmark; `same-origin`: our own page.
        return !matches!(site, "same-origin" | "none");
    }
    match (get("origin"), get("host")) {
        (None, _) => false,
        (Some(origin), Some(host)) => {
            origin.split_once("://").map(|(_, authority)| authority) != Some(host)
        }
        (Some(_), None) => true,
    }
}

/// `/metrics` is for the operator: with `metrics_key` set it needs that key (API keys do not
/// grant it); without one it is open only on a server without API keys, where there is no
/// per-key data to mix.
fn metrics_access(app: &AppState, given: Option<&str>) -> Result<(), Problem> {
    match (&app.metrics_key, given) {
        (Some(key), Some(given)) if key.check(given).is_some() => Ok(()),
        (Some(_), _) => Err(Problem::new(
            Code::Unauthorized,
            "/metrics needs the operator's metrics key (Authorization: Bearer KEY)",
        )),
        (None, _) if app.keys.enabled() => Err(Problem::new(
            Code::MetricsKeyRequired,
            "this server has API keys: set metrics_key (VSR_METRICS_KEY) to read /metrics",
        )),
        (None, _) => Ok(()),
    }
}

/// A value of the query string, decoded; `None` if absent.
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn unauthorized(detail: &str) -> Response {
    Problem::new(Code::Unauthorized, detail).into_response()
}

/// A download link's parameters, each given at most once.
#[derive(Debug, Default, PartialEq)]
pub struct Link {
    expires: Option<String>,
    signature: Option<String>,
}

impl Link {
    /// Reads `expires` and `signature` from a query string; either given twice is an error.
    pub fn parse(query: Option<&str>) -> Result<Link, Problem> {
        let mut link = Link::default();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let slot = match k.as_ref() {
                "expires" => &mut link.expires,
                "signature" => &mut link.signature,
                _ => continue,
            };
            if slot.replace(v.into_owned()).is_some() {
                return Err(Problem::bad_field(
                    Code::BadLink,
                    k.into_owned(),
                    "the download link repeats a parameter; get a new one from /api/status",
                ));
            }
        }
        Ok(link)
    }

    /// Whether the query has any part of a signed link.
    fn is_present(&self) -> bool {
        self.expires.is_some() || self.signature.is_some()
    }
}

/// The download rule: `Ok` if `owner` may see the task (`task_owner` is `None` when there is
/// no such task) or `link` is a valid unexpired signature over `task_id`.
pub fn authorize_download(
    secret: &[u8],
    owner: &Owner,
    task_id: &str,
    task_owner: Option<&Option<String>>,
    link: &Link,
) -> Result<(), Problem> {
    if task_owner.is_some_and(|o| owner.may_see(o)) {
        return Ok(());
    }
    if link.is_present() {
        return match verify(secret, task_id, link, super::store::now_ms()) {
            LinkCheck::Valid => Ok(()),
            LinkCheck::Expired => Err(Problem::new(
                Code::LinkExpired,
                "the download link has expired; get a new one from /api/status",
            )),
            LinkCheck::Invalid => Err(Problem::new(
                Code::BadSignature,
                "the download link is not valid; get a new one from /api/status",
            )),
        };
    }
    match owner {
        Owner::Anonymous => Err(Problem::new(
            Code::Unauthorized,
            "downloads need an API key or a signed link (downloadUrl in /api/status)",
        )),
        // Another key's task looks like no task at all.
        _ => Err(Problem::not_found(task_id)),
    }
}

/// `expires` (Unix seconds) and signature for a download link to `task_id`.
pub fn sign(secret: &[u8], task_id: &str, expires: i64) -> String {
    hex(&mac(secret, task_id, expires).finalize().into_bytes())
}

fn mac(secret: &[u8], task_id: &str, expires: i64) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length works");
    mac.update(format!("{task_id}:{expires}").as_bytes());
    mac
}

/// What a link's check found.
#[derive(Debug, PartialEq, Eq)]
enum LinkCheck {
    Valid,
    /// Signed by us, but past its expiry.
    Expired,
    /// Missing a part, malformed, or not signed by us.
    Invalid,
}

/// Length of a signature in hex: one SHA-256 HMAC.
const SIGNATURE_HEX: usize = 64;

/// Checks a link's signature (exact length, constant-time compare) and then its expiry.
fn verify(secret: &[u8], task_id: &str, link: &Link, now_ms: i64) -> LinkCheck {
    let (Some(expires), Some(signature)) = (&link.expires, &link.signature) else {
        return LinkCheck::Invalid;
    };
    let Some(expires) = expires
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| expires.parse::<i64>().ok())
        .flatten()
    else {
        return LinkCheck::Invalid;
    };
    if signature.len() != SIGNATURE_HEX || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return LinkCheck::Invalid;
    }
    let given: Vec<u8> = (0..SIGNATURE_HEX / 2)
        .map(|i| u8::from_str_radix(&signature[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect();
    if mac(secret, task_id, expires).verify_slice(&given).is_err() {
        return LinkCheck::Invalid;
    }
    if expires.saturating_mul(1000) > now_ms {
        LinkCheck::Valid
    } else {
        LinkCheck::Expired
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(expires: i64, signature: &str) -> Link {
        Link {
            expires: Some(expires.to_string()),
            signature: Some(signature.to_string()),
        }
    }

    #[test]
    fn keys_and_signatures() {
        let keys = Keys::new(&["alpha".into(), "beta".into()]);
        assert!(keys.check("alpha").is_some());
        assert_ne!(keys.check("alpha"), keys.check("beta"));
        assert!(keys.check("alph").is_none() && keys.check("").is_none());
        let now = super::super::store::now_ms();
        let later = now / 1000 + 60;
        let sig = sign(b"s3cret", "task", later);
        let check = |secret: &[u8], id, l: &Link| verify(secret, id, l, now);
        assert_eq!(
            check(b"s3cret", "task", &link(later, &sig)),
            LinkCheck::Valid
        );
        assert_eq!(
            check(b"other", "task", &link(later, &sig)),
            LinkCheck::Invalid
        );
        assert_eq!(
            check(b"s3cret", "task2", &link(later, &sig)),
            LinkCheck::Invalid
        );
        let past = later - 120;
        assert_eq!(
            check(
                b"s3cret",
                "task",
                &link(past, &sign(b"s3cret", "task", past))
            ),
            LinkCheck::Expired
        );
        for bad in [
            "zz",
            "",
            &sig[..62],
            &format!("{sig}00"),
            &sig.to_uppercase(),
        ] {
            let want = if bad.eq_ignore_ascii_case(&sig) {
                LinkCheck::Valid // hex is case-insensitive: the same bytes
            } else {
                LinkCheck::Invalid
            };
            assert_eq!(check(b"s3cret", "task", &link(later, bad)), want, "{bad}");
        }
        let no_expiry = Link {
            expires: None,
            signature: Some(sig.clone()),
        };
        assert_eq!(check(b"s3cret", "task", &no_expiry), LinkCheck::Invalid);
        let huge = Link {
            expires: Some(i64::MAX.to_string()),
            signature: Some(sig.clone()),
        };
        assert_eq!(check(b"s3cret", "task", &huge), LinkCheck::Invalid);
        let signed = Link {
            expires: Some(format!("+{later}")),
            signature: Some(sig),
        };
        assert_eq!(check(b"s3cret", "task", &signed), LinkCheck::Invalid);
        assert_eq!(
            query_param(Some("x=1&api_key=k%26y"), "api_key").as_deref(),
            Some("k&y")
        );
        assert!(Link::parse(Some("signature=a&signature=b")).is_err());
        assert!(!Link::parse(Some("x=signature=1")).unwrap().is_present());
    }

    #[test]
    fn cross_site() {
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, v.parse().unwrap());
            }
            h
        };
        assert!(!is_cross_site(&headers(&[])));
        assert!(!is_cross_site(&headers(&[(
            "sec-fetch-site",
            "same-origin"
        )])));
        assert!(is_cross_site(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(is_cross_site(&headers(&[("sec-fetch-site", "same-site")])));
        let same = [
            ("origin", "http://127.0.0.1:5000"),
            ("host", "127.0.0.1:5000"),
        ];
        assert!(!is_cross_site(&headers(&same)));
        let other = [
            ("origin", "http://evil.example"),
            ("host", "127.0.0.1:5000"),
        ];
        assert!(is_cross_site(&headers(&other)));
        assert!(is_cross_site(&headers(&[("origin", "null")])));
    }

    #[test]
    fn hosts() {
        let mut config = crate::config::ServiceConfig::default();
        let with_host = |h: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::HOST, h.parse().unwrap());
            m
        };
        for ok in [
            "127.0.0.1:5000",
            "localhost:5000",
            "[::1]:5000",
            "127.0.0.2",
        ] {
            assert!(host_allowed(&config, &with_host(ok)), "{ok}");
        }
        assert!(!host_allowed(&config, &with_host("evil.example:5000")));
        // Not a name and a port: refused, whatever name they start with.
        let mut latin = HeaderMap::new();
        let value = header::HeaderValue::from_bytes(b"localh\xf6st").unwrap();
        latin.insert(header::HOST, value);
        assert!(!host_allowed(&config, &latin));
        for odd in [
            "localhost:80@evil",
            "localhost:x",
            "[::1]x",
            "local host",
            "[::1",
        ] {
            assert!(!host_allowed(&config, &with_host(odd)), "{odd}");
        }
        assert!(host_allowed(&config, &HeaderMap::new()));
        config.host = "0.0.0.0".into();
        assert!(host_allowed(&config, &with_host("vsr.example.org")));
        config.allowed_hosts = vec!["vsr.example.org".into()];
        assert!(host_allowed(&config, &with_host("VSR.example.org:443")));
        assert!(!host_allowed(&config, &with_host("127.0.0.1:5000")));
    }
}
