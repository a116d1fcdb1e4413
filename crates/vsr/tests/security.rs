//! `vsr serve` attacked over loopback as a hostile client would: downloads without the right
//! key or link, model paths chosen by the client, uploads that are too many, too large or too
//! slow, slow and silent connections, cross-site requests from a browser, and the shape of
//! every error. docs/security.md is the threat model these cases come from. The server runs
//! in-process (`vsr_service::serve`) except where its own process is measured (memory) or
//! held (slow clients).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::server::Server;
use common::testsrc_clip;
use hmac::{Hmac, Mac};
use reqwest::blocking::{multipart, Response};
use serde_json::{json, Value};
use sha2::Sha256;

/// What the harness signs links with (`SECRET_KEY` in `Server::spawn`).
const SECRET: &[u8] = b"test-secret";

fn sign(task: &str, expires: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(format!("{task}:{expires}").as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Status, stable code and body of a problem+json answer (asserting that shape).
fn problem(r: Response) -> (u16, String, Value) {
    let status = r.status().as_u16();
    let kind = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = r.text().unwrap();
    assert!(
        kind.starts_with("application/problem+json"),
        "{status} is {kind:?}, not problem+json: {body}"
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    (status, v["code"].as_str().unwrap().to_string(), v)
}

fn upload_with_key(server: &Server, key: &str, clip: &Path) -> String {
    let form = multipart::Form::new()
        .text("settings", r#"{"scale":2,"quality":"fast"}"#)
        .file("video", clip)
        .unwrap();
    let (code, v) = server.send_form(form, &[("X-API-Key", key)]);
    assert_eq!(code, 202, "{v}");
    v["taskId"].as_str().unwrap().to_string()
}

/// Sends `head` and then `body` in `pieces`-byte writes `pause` apart, from a thread, while
/// this thread reads the answer; returns the answer and how long it took to come (or to the
/// close). The writer ignores errors: the server may close on it mid-body.
fn raw_request(
    port: u16,
    head: String,
    body: Vec<u8>,
    piece: usize,
    pause: Duration,
) -> (String, Duration) {
    let conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut writer = conn.try_clone().unwrap();
    let started = Instant::now();
    std::thread::spawn(move || {
        if writer.write_all(head.as_bytes()).is_err() {
            return;
        }
        for chunk in body.chunks(piece.max(1)) {
            if writer.write_all(chunk).is_err() {
                return;
            }
            if !pause.is_zero() {
                std::thread::sleep(pause);
            }
        }
    });
    let mut reader = conn;
    let mut reply = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                reply.extend_from_slice(&buf[..n]);
                // One answer is enough: stop once its body is complete.
                if complete(&reply) {
                    break;
                }
            }
        }
    }
    (
        String::from_utf8_lossy(&reply).into_owned(),
        started.elapsed(),
    )
}

/// Whether `reply` holds a whole HTTP response with a Content-Length body.
fn complete(reply: &[u8]) -> bool {
    let text = String::from_utf8_lossy(reply);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
        })
        .is_some_and(|n| body.len() >= n)
}

/// A chunked-encoding request body carrying `parts` (name, file name, bytes) as a form.
fn chunked_form(parts: &[(&str, Option<&str>, Vec<u8>)]) -> Vec<u8> {
    let mut form = Vec::new();
    for (name, file, bytes) in parts {
        let disposition = match file {
            Some(f) => format!("form-data; name=\"{name}\"; filename=\"{f}\""),
            None => format!("form-data; name=\"{name}\""),
        };
        form.extend_from_slice(
            format!("--XyZ\r\nContent-Disposition: {disposition}\r\n\r\n").as_bytes(),
        );
        form.extend_from_slice(bytes);
        form.extend_from_slice(b"\r\n");
    }
    form.extend_from_slice(b"--XyZ--\r\n");
    let mut body = Vec::new();
    for chunk in form.chunks(64 * 1024) {
        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(chunk);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    body
}

fn chunked_head(path: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=XyZ\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
}

/// The head of a 100 kB multipart upload, as a slow client starts one.
const UPLOAD_HEAD: &str = "POST /api/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: 100000\r\n\r\n";

fn status_of(reply: &str) -> u16 {
    reply
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Uploads `clip` as a draft (probed and kept, not started).
fn draft(server: &Server, clip: &Path) -> (u16, Value) {
    let form = multipart::Form::new()
        .text("start", "false")
        .file("video", clip)
        .unwrap();
    server.send_form(form, &[])
}

fn assert_no_strays(server: &Server, case: &str) {
    let files = server.files_in("uploads");
    assert!(
        files.is_empty(),
        "{case}: left in the upload folder: {files:?}"
    );
}

/// Every way to ask for a result, with and without keys and links: only the owner's key or a
/// valid, unexpired signature gets the file.
#[test]
fn download_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    testsrc_clip(&clip, "64x48", 10, 0.5);
    let server = Server::in_process(
        dir.path(),
        &[
            ("VSR_API_KEYS", "key-one,key-two"),
            ("VSR_METRICS_KEY", "ops-key"),
        ],
    );
    let id = upload_with_key(&server, "key-one", &clip);
    let started = Instant::now();
    let link = loop {
        let r = server
            .client
            .get(server.url(&format!("/api/status/{id}")))
            .header("X-API-Key", "key-one")
            .send()
            .unwrap();
        let v: Value = r.json().unwrap();
        if v["status"] == "completed" {
            break v["downloadUrl"].as_str().unwrap().to_string();
        }
        assert!(v["status"] != "failed", "{v}");
        assert!(started.elapsed() < Duration::from_secs(60), "{v}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let get = |query: &str, key: Option<&str>| {
        let mut r = server
            .client
            .get(server.url(&format!("/api/download/{id}{query}")));
        if let Some(k) = key {
            r = r.header("X-API-Key", k);
        }
        r.send().unwrap()
    };
    let later = now_s() + 600;
    let sig = sign(&id, later);
    let cases: &[(&str, String, Option<&str>, u16, &str)] = &[
        ("no key, no link", String::new(), None, 401, "unauthorized"),
        (
            "any signature",
            "?signature=zz".into(),
            None,
            403,
            "bad_signature",
        ),
        (
            "empty signature",
            "?signature=".into(),
            None,
            403,
            "bad_signature",
        ),
        (
            "signature inside another value",
            "?x=signature=1".into(),
            None,
            401,
            "unauthorized",
        ),
        (
            "wrong key",
            String::new(),
            Some("key-three"),
            401,
            "unauthorized",
        ),
        (
            "another key's task",
            String::new(),
            Some("key-two"),
            404,
            "task_not_found",
        ),
        (
            "forged signature",
            format!("?expires={later}&signature={}", "ab".repeat(32)),
            None,
            403,
            "bad_signature",
        ),
        (
            "truncated signature",
            format!("?expires={later}&signature={}", &sig[..63]),
            None,
            403,
            "bad_signature",
        ),
        (
            "signature without expiry",
            format!("?signature={sig}"),
            None,
            403,
            "bad_signature",
        ),
        (
            "expired signature",
            format!(
                "?expires={}&signature={}",
                now_s() - 5,
                sign(&id, now_s() - 5)
            ),
            None,
            403,
            "link_expired",
        ),
        (
            "signature for a later expiry",
            format!("?expires={}&signature={sig}", later + 3600),
            None,
            403,
            "bad_signature",
        ),
        (
            "non-numeric expiry",
            format!("?expires=soon&signature={sig}"),
            None,
            403,
            "bad_signature",
        ),
        (
            "duplicated signature",
            format!("?expires={later}&signature={sig}&signature={sig}"),
            None,
            400,
            "bad_link",
        ),
        (
            "another task's link",
            format!("?expires={later}&signature={}", sign("other-task", later)),
            None,
            403,
            "bad_signature",
        ),
    ];
    for (case, query, key, want, code) in cases {
        let (status, got, body) = problem(get(query, *key));
        assert_eq!((status, got.as_str()), (*want, *code), "{case}: {body}");
    }
    // Allowed: the owner's key, the link as given, our own fresh link with another key.
    for (case, query, key) in [
        ("owner's key", String::new(), Some("key-one")),
        (
            "signed link",
            link.split_once('?').map(|(_, q)| format!("?{q}")).unwrap(),
            None,
        ),
        (
            "valid link, another key",
            format!("?expires={later}&signature={sig}"),
            Some("key-two"),
        ),
    ] {
        let r = get(&query, key);
        assert_eq!(r.status().as_u16(), 200, "{case}");
        assert!(r.bytes().unwrap().len() > 1000, "{case}: no video");
    }
    // Download managers ask with HEAD first; the link answers it as it answers GET.
    let head = server
        .client
        .head(server.url(&format!(
            "/api/download/{id}?expires={later}&signature={sig}"
        )))
        .send()
        .unwrap();
    assert_eq!(head.status().as_u16(), 200);

    // /metrics is the operator's: API keys do not open it, the metrics key does.
    let metrics = |key: Option<&str>| {
        let mut r = server.client.get(server.url("/metrics"));
        if let Some(k) = key {
            r = r.header("Authorization", format!("Bearer {k}"));
        }
        r.send().unwrap()
    };
    let (status, code, _) = problem(metrics(Some("key-one")));
    assert_eq!((status, code.as_str()), (401, "unauthorized"));
    assert_eq!(problem(metrics(None)).0, 401);
    // Never from a URL, where it would land in logs and history.
    let r = server
        .client
        .get(server.url("/metrics?api_key=ops-key"))
        .send()
        .unwrap();
    assert_eq!(problem(r).0, 401);
    let r = metrics(Some("ops-key"));
    assert_eq!(r.status().as_u16(), 200);
    assert!(r
        .text()
        .unwrap()
        .contains("vsr_tasks{status=\"completed\"} 1"));
    drop(server);

    // With keys and no metrics key, /metrics is refused to every key.
    let server = Server::in_process(dir.path(), &[("VSR_API_KEYS", "key-one")]);
    let r = server
        .client
        .get(server.url("/metrics"))
        .header("X-API-Key", "key-one")
        .send()
        .unwrap();
    let (status, code, _) = problem(r);
    assert_eq!((status, code.as_str()), (403, "metrics_key_required"));
}

/// A client names models from the catalog or the operator's folder only: a path is refused
/// the same way whether or not the file exists, and no error quotes a model file.
#[test]
fn clients_cannot_name_model_files() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    testsrc_clip(&clip, "64x48", 10, 0.5);
    // A file outside every model folder, with something beside it that looks like weights.
    let secret = dir.path().join("secret.param");
    std::fs::write(&secret, "TOP-SECRET-FIRST-LINE\nmore\n").unwrap();
    std::fs::write(dir.path().join("secret.bin"), [0u8; 64]).unwrap();
    let lonely = dir.path().join("lonely.param");
    std::fs::write(&lonely, "7767517\n").unwrap();
    // The operator's folder: a real model under a name of its own, and a broken one.
    let custom = dir.path().join("custom-models");
    std::fs::create_dir_all(&custom).unwrap();
    let models = common::models_dir();
    for ext in ["param", "bin"] {
        std::fs::copy(
            models.join(format!("realesr-animevideov3-x2.{ext}")),
            custom.join(format!("my-anime-2x.{ext}")),
        )
        .unwrap();
    }
    std::fs::write(custom.join("broken.param"), "OPERATOR-FILE-CONTENT\n").unwrap();
    std::fs::write(custom.join("broken.bin"), [0u8; 16]).unwrap();
    let server = Server::in_process(
        dir.path(),
        &[("VSR_CUSTOM_MODELS_DIR", custom.to_str().unwrap())],
    );

    let refused = |model: &str| -> String {
        let (code, body) = server.upload(&clip, json!({"scale": 2, "model": model}));
        assert_eq!(
            (code, body["code"].as_str()),
            (400, Some("model_unavailable")),
            "{model}: {body}"
        );
        let detail = body["detail"].as_str().unwrap().to_string();
        for leak in [
            "SECRET",
            "OPERATOR-FILE",
            ".bin",
            "bad magic",
            dir.path().to_str().unwrap(),
        ] {
            assert!(
                !detail.replace(model, "").contains(leak),
                "{model}: {detail}"
            );
        }
        detail.replace(model, "NAME")
    };
    let existing = refused(secret.to_str().unwrap());
    // No oracle: an existing file, one without weights and a missing one read the same.
    assert_eq!(refused(lonely.to_str().unwrap()), existing);
    assert_eq!(refused("/no/such/model.param"), existing);
    assert_eq!(refused("../../secret"), existing);
    assert_eq!(refused("no-such-model"), existing);
    refused("broken");
    assert_no_strays(&server, "refused models");

    // The operator's model is offered by name, listed, and runs.
    let (_, listed) = server.get("/api/models");
    assert!(
        listed["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "my-anime-2x"),
        "{listed}"
    );
    let (code, task) = server.upload(&clip, json!({"model": "my-anime-2x"}));
    assert_eq!(code, 202, "{task}");
    let id = task["taskId"].as_str().unwrap();
    let done = server.wait_for(id, 60, |s| {
        ["completed", "failed"].contains(&s["status"].as_str().unwrap_or(""))
    });
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["output"]["width"], 128);
}

/// The whole body is bounded, chunked or not: one video part, small text parts, and nothing
/// left in the upload folder by any refusal. Orphans are swept.
#[test]
fn uploads_are_bounded_as_a_whole() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    testsrc_clip(&clip, "64x48", 10, 0.5);
    let video = std::fs::read(&clip).unwrap();
    let server = Server::start(
        dir.path(),
        &[
            ("MAX_CONTENT_LENGTH", "2000000"),
            ("VSR_SWEEP_INTERVAL_SECONDS", "1"),
        ],
    );
    let nearly = vec![7u8; 1_900_000];
    let port = server.port;
    let send = |parts: &[(&str, Option<&str>, Vec<u8>)]| {
        raw_request(
            port,
            chunked_head("/api/upload"),
            chunked_form(parts),
            64 * 1024,
            Duration::ZERO,
        )
    };

    // 13 video parts of 1.9 MB against a 2 MB limit, chunked: refused at the second part.
    let many: Vec<_> = (0..13)
        .map(|i| {
            (
                "video",
                Some(if i % 2 == 0 { "a.mp4" } else { "b.mkv" }),
                nearly.clone(),
            )
        })
        .collect();
    let (reply, took) = send(&many);
    assert!(
        matches!(status_of(&reply), 400 | 413) && took < Duration::from_secs(10),
        "{took:?}: {reply}"
    );
    assert_no_strays(&server, "13 video parts");

    // Two small, valid video parts with different extensions: refused, both gone.
    let (reply, _) = send(&[
        ("video", Some("first.mkv"), video.clone()),
        ("video", Some("second.mp4"), video.clone()),
    ]);
    assert!(
        reply.contains("bad_upload") && reply.contains("more than one video"),
        "{reply}"
    );
    assert_no_strays(&server, "two video parts");

    // The whole body over the limit though the video part is under it.
    let (reply, _) = send(&[
        ("video", Some("clip.mp4"), nearly.clone()),
        ("padding", None, vec![b'x'; 400_000]),
    ]);
    assert_eq!(status_of(&reply), 413, "{reply}");
    assert!(reply.contains("too_large"), "{reply}");
    assert_no_strays(&server, "padding");

    // A 100 MB settings part: refused after its first 16 KiB, the server's memory unmoved.
    let rss = || {
        let status = std::fs::read_to_string(format!(
            "/proc/{}/status",
            server.child.as_ref().unwrap().id()
        ))
        .unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap()
    };
    let before = rss();
    let (reply, took) = raw_request(
        port,
        chunked_head("/api/upload"),
        chunked_form(&[("settings", None, vec![b'{'; 100 << 20])]),
        1 << 20,
        Duration::ZERO,
    );
    assert!(
        reply.contains("too_large") && reply.contains("settings"),
        "{reply}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    let grown = rss().saturating_sub(before);
    assert!(grown < 50 * 1024, "server memory grew by {grown} kB");

    // A part whose headers never end: refused after a bounded stretch, not read to the limit.
    let before = rss();
    let mut endless =
        b"--XyZ\r\nContent-Disposition: form-data; name=\"video\"; filename=\"a.mp4\"\r\nX-Pad: "
            .to_vec();
    endless.extend(std::iter::repeat_n(b'a', 1_900_000));
    let mut body = Vec::new();
    for chunk in endless.chunks(64 * 1024) {
        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(chunk);
        body.extend_from_slice(b"\r\n");
    }
    let (reply, took) = raw_request(
        port,
        chunked_head("/api/upload"),
        body,
        64 * 1024,
        Duration::ZERO,
    );
    assert!(
        reply.contains("413") && reply.contains("headers"),
        "{reply}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    let grown = rss().saturating_sub(before);
    assert!(grown < 50 * 1024, "server memory grew by {grown} kB");
    assert_no_strays(&server, "endless part headers");

    // A valid upload still works after all that.
    let (code, body) = draft(&server, &clip);
    assert_eq!(code, 202, "{body}");

    // Orphans (named as uploads are, referred to by no task, old) are swept; others stay.
    let uploads = server.dir.join("uploads");
    let orphan = uploads.join("0b5e9d3c-7f1e-4c2a-9f3e-2d1c0b9a8f7e.mp4");
    let fresh = uploads.join("1c6f0e4d-8a2f-4d3b-8a4f-3e2d1c0b9a8f.mp4");
    let foreign = uploads.join("notes.txt");
    for f in [&orphan, &fresh, &foreign] {
        std::fs::write(f, b"x").unwrap();
    }
    for f in [&orphan, &foreign] {
        let out = std::process::Command::new("touch")
            .args(["-d", "2 hours ago"])
            .arg(f)
            .status()
            .unwrap();
        assert!(out.success());
    }
    let started = Instant::now();
    while orphan.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the orphan was not swept"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(fresh.exists() && foreign.exists());
    // The draft's own upload is referred to by its task: kept.
    assert_eq!(
        server.files_in("uploads").len(),
        3,
        "{:?}",
        server.files_in("uploads")
    );
}

/// Slow and silent clients are cut off by the header, body-idle, JSON-body and upload
/// timeouts; slow uploads hold at most their slots; everyone else stays fast.
#[test]
fn slow_clients_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            ("VSR_HEADER_TIMEOUT_SECONDS", "2"),
            ("VSR_BODY_IDLE_TIMEOUT_SECONDS", "2"),
            ("VSR_JSON_BODY_TIMEOUT_SECONDS", "2"),
            ("VSR_UPLOAD_TIMEOUT_SECONDS", "5"),
            ("VSR_MAX_CONCURRENT_UPLOADS", "3"),
        ],
    );
    let port = server.port;
    let closed_within = |head: &str, limit: Duration| {
        let (reply, took) = raw_request(port, head.to_string(), Vec::new(), 1, Duration::ZERO);
        assert!(took < limit, "{head:?} held for {took:?}: {reply}");
        reply
    };
    // Silent, and stalled mid-header.
    closed_within("", Duration::from_secs(5));
    closed_within(
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n",
        Duration::from_secs(5),
    );
    // A head trickled a byte a second.
    let (_, took) = raw_request(
        port,
        String::new(),
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: aaaaaaaaaaaaaaaaaaaa\r\n\r\n".to_vec(),
        1,
        Duration::from_secs(1),
    );
    assert!(
        took < Duration::from_secs(5),
        "trickled head held for {took:?}"
    );

    // An upload that stops mid-body: 408 after the idle timeout.
    let head = format!("{UPLOAD_HEAD}--XyZ\r\nContent-Disposition: form-data; name=\"video\"; filename=\"a.mp4\"\r\n\r\nabc");
    let reply = closed_within(&head, Duration::from_secs(6));
    assert!(
        reply.contains("408") && reply.contains("upload_stalled"),
        "{reply}"
    );
    // The same for an image.
    let head = format!(
        "{}--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\nabc",
        UPLOAD_HEAD.replace("/api/upload", "/api/images")
    );
    let reply = closed_within(&head, Duration::from_secs(6));
    assert!(
        reply.contains("408") && reply.contains("upload_stalled"),
        "{reply}"
    );

    // A JSON body trickled: 408 after the JSON-body timeout, whatever the route.
    let (reply, took) = raw_request(
        port,
        "POST /api/start/some-task HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n".into(),
        vec![b' '; 40],
        1,
        Duration::from_millis(500),
    );
    assert!(
        reply.contains("request_timeout") && took < Duration::from_secs(6),
        "{took:?} {reply}"
    );

    // 20 uploads trickling a byte every 200 ms: 3 hold the slots until the upload timeout,
    // the rest are told 503 at once, and other requests stay fast meanwhile.
    let slow: Vec<_> = (0..20)
        .map(|_| {
            std::thread::spawn(move || {
                raw_request(
                    port,
                    format!("{UPLOAD_HEAD}--XyZ\r\nContent-Disposition: form-data; name=\"video\"; filename=\"a.mp4\"\r\n\r\n"),
                    vec![b'v'; 100],
                    1,
                    Duration::from_millis(200),
                )
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..10 {
        let t = Instant::now();
        assert_eq!(server.get("/healthz").0, 200);
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "health took {:?}",
            t.elapsed()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let replies: Vec<(String, Duration)> = slow.into_iter().map(|t| t.join().unwrap()).collect();
    let busy = replies
        .iter()
        .filter(|(r, _)| r.contains("server_busy"))
        .count();
    let timed_out = replies
        .iter()
        .filter(|(r, _)| r.contains("upload_timeout"))
        .count();
    assert_eq!((busy, timed_out), (17, 3), "{replies:?}");
    for (reply, took) in &replies {
        assert!(*took < Duration::from_secs(9), "held {took:?}: {reply}");
    }
    // The slots are free again.
    let clip = dir.path().join("clip.mp4");
    testsrc_clip(&clip, "64x48", 10, 0.5);
    let form = multipart::Form::new()
        .text("start", "false")
        .file("video", &clip)
        .unwrap();
    let (code, body) = server.send_form(form, &[("Idempotency-Key", "once")]);
    assert_eq!(code, 202, "{body}");

    // A replay answered before its body still obeys the idle timeout while it is drained.
    let (reply, took) = raw_request(
        port,
        "POST /api/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nIdempotency-Key: once\r\nContent-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: 100000\r\n\r\n--XyZ\r\n".to_string(),
        Vec::new(),
        1,
        Duration::ZERO,
    );
    // A replay is read (its video name and settings must be the first upload's), so one
    // that stalls is dropped after the idle timeout, as any upload.
    assert!(
        reply.contains("408") && reply.contains("upload_stalled") && took < Duration::from_secs(4),
        "{took:?} {reply}"
    );
}

/// Security headers on every response; browsers' cross-site requests that change state are
/// refused unless they carry a key; every error is problem+json in our own words.
#[test]
fn headers_cross_site_and_error_shape() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    testsrc_clip(&clip, "64x48", 10, 1.0);
    let text = dir.path().join("text.mp4");
    std::fs::write(&text, "not a video at all\n".repeat(50)).unwrap();
    let server = Server::in_process(dir.path(), &[]);
    for path in [
        "/",
        "/static/app.js",
        "/api/models",
        "/api/status/nope",
        "/nothing",
    ] {
        let r = server.client.get(server.url(path)).send().unwrap();
        let h = r.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
            "{path}: {csp}"
        );
    }

    // A page that rebinds its own name to 127.0.0.1 is not this server.
    let rebound = server
        .client
        .get(server.url("/api/tasks"))
        .header("Host", "evil.example:5000")
        .send()
        .unwrap();
    let (status, code, _) = problem(rebound);
    assert_eq!((status, code.as_str()), (403, "host_not_allowed"));
    let (status, _) = server.get("/api/tasks");
    assert_eq!(status, 200);

    // A cross-site form post (no preflight needed) is refused; our own page's is not.
    let post = |path: &str, file: &Path, headers: &[(&str, &str)]| {
        let form = multipart::Form::new()
            .text("start", "false")
            .file("video", file)
            .unwrap();
        let mut r = server.client.post(server.url(path)).multipart(form);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send().unwrap()
    };
    for headers in [
        &[("Sec-Fetch-Site", "cross-site")][..],
        &[("Sec-Fetch-Site", "same-site")][..],
        &[("Origin", "http://evil.example")][..],
        &[("Origin", "null")][..],
    ] {
        for path in ["/api/upload", "/api/cancel/x"] {
            let (status, code, _) = problem(post(path, &clip, headers));
            assert_eq!(
                (status, code.as_str()),
                (403, "cross_site_request"),
                "{path} {headers:?}"
            );
        }
    }
    assert_no_strays(&server, "cross-site posts");
    let own_page = server.url("");
    let same = post(
        "/api/upload",
        &clip,
        &[
            ("Sec-Fetch-Site", "same-origin"),
            ("Origin", own_page.as_str()),
        ],
    );
    assert_eq!(same.status().as_u16(), 202);
    let task: Value = same.json().unwrap();
    let id = task["taskId"].as_str().unwrap().to_string();

    // Errors in our own words: no FFmpeg text, no server path.
    let (status, code, body) = problem(post("/api/upload", &text, &[]));
    assert_eq!((status, code.as_str()), (415, "unreadable_media"), "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("text.mp4: ")
            && !detail.contains("Invalid data")
            && !detail.contains("uploads"),
        "{detail}"
    );
    let preview = |body: &str| {
        server
            .client
            .post(server.url(&format!("/api/preview/{id}")))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .unwrap()
    };
    let (status, code, body) = problem(preview(r#"{"time": 1e20}"#));
    assert_eq!(
        (status, code.as_str(), body["field"].as_str()),
        (400, "invalid_settings", Some("time")),
        "{body}"
    );
    // The framework's own refusals are problem+json too.
    assert_eq!(problem(preview("{not json")).0, 400);
    let (status, code, _) = problem(server.client.put(server.url("/api/upload")).send().unwrap());
    assert_eq!((status, code.as_str()), (405, "method_not_allowed"));
    let (status, _, _) = problem(
        server
            .client
            .get(server.url("/api/tasks?page=x"))
            .send()
            .unwrap(),
    );
    assert_eq!(status, 400);
    let (status, code, _) = problem(
        server
            .client
            .get(server.url(&format!("/api/download/{id}?expires=1&expires=2")))
            .send()
            .unwrap(),
    );
    assert_eq!((status, code.as_str()), (400, "bad_link"));
    // Only the draft's upload is stored.
    for f in server.files_in("uploads") {
        assert!(f.starts_with(&id), "stray upload {f}");
    }
}
