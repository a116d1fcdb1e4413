//! `vsr serve` driven over HTTP on a loopback port, with real videos and real models: the
//! whole task life cycle, every error, cancel, restart mid-job, expiry and API keys.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::server::{id, terminal, Server};
use common::{ffmpeg, ffprobe, testsrc_clip};
use reqwest::blocking::{multipart, Client};
use serde_json::{json, Value};

fn probe_size(file: &Path) -> String {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-count_frames",
            "-show_entries",
            "stream=width,height,nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Upload -> progress advances (polled and as events) -> completed -> the download plays at
/// the right size, whole and in ranges; then the task is listed, and deleted.
#[test]
fn task_life_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    testsrc_clip(&clip, "160x90", 25, 2.0);
    let server = Server::in_process(dir.path(), &[]);

    let (code, task) = server.upload(
        &clip,
        json!({"scale": 2, "quality": "fast", "guideScale": 7.5}),
    );
    assert_eq!(code, 202, "{task}");
    let id = id(&task);
    assert_eq!(task["status"], "queued");
    assert_eq!(task["downloadUrl"], Value::Null);
    assert_eq!(task["output"]["width"], 320);
    assert!(task["settings"]["notes"]
        .to_string()
        .contains("guideScale 7.5 is not applicable"));

    // Events in the background while progress is polled here.
    let events_url = server.url(&format!("/api/events/{id}"));
    let events = std::thread::spawn(move || {
        let r = Client::new().get(events_url).send().unwrap();
        BufReader::new(r)
            .lines()
            .map_while(Result::ok)
            .filter(|l| l.starts_with("event:"))
            .collect::<Vec<_>>()
    });
    let mut seen = Vec::new();
    let started = Instant::now();
    loop {
        let (code, p) = server.get(&format!("/api/progress/{id}"));
        assert_eq!(code, 200);
        seen.push(p["currentFrame"].as_u64().unwrap());
        if p["status"] == "completed" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "{p}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "progress went back: {seen:?}"
    );
    assert!(
        seen.iter().any(|&f| f > 0 && f < 50),
        "no intermediate progress seen: {seen:?}"
    );
    let events = events.join().unwrap();
    assert!(events.iter().any(|e| e == "event: progress"), "{events:?}");
    assert_eq!(events.last().map(String::as_str), Some("event: done"));

    let (_, status) = server.get(&format!("/api/status/{id}"));
    assert_eq!(status["progress"], 100.0);
    for key in ["createdAt", "startedAt", "finishedAt", "expiresAt"] {
        assert!(status[key].is_string(), "{key}: {status}");
    }
    // The signed link works; the file plays at 2x with every frame.
    let url = server.url(status["downloadUrl"].as_str().unwrap());
    let r = server.client.get(&url).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("clip_320x180.mp4"));
    let bytes = r.bytes().unwrap();
    let out = dir.path().join("result.mp4");
    std::fs::write(&out, &bytes).unwrap();
    assert_eq!(probe_size(&out), "320,180,50");
    let part = server
        .client
        .get(&url)
        .header("Range", "bytes=10-19")
        .send()
        .unwrap();
    assert_eq!(part.status().as_u16(), 206);
    assert_eq!(part.bytes().unwrap(), bytes[10..20]);

    let (_, list) = server.get("/api/tasks?perPage=5");
    assert_eq!(list["total"], 1);
    assert_eq!(list["tasks"][0]["taskId"], id.as_str());
    let r = server
        .client
        .delete(server.url(&format!("/api/tasks/{id}")))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(server.get(&format!("/api/status/{id}")).0, 404);
    assert!(server.files_in("processed").is_empty());
    assert!(server.files_in("uploads").is_empty());
}

/// Cancel stops a running task within a second, leaves no files, and repeats harmlessly.
#[test]
fn cancel_mid_run() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("long.mp4");
    testsrc_clip(&clip, "320x180", 25, 20.0);
    let server = Server::in_process(dir.path(), &[]);
    let (_, task) = server.upload(&clip, json!({"scale": 2, "quality": "fast"}));
    let id = id(&task);
    server.wait_for(&id, 60, |s| {
        s["stage"] == "upscaling" && s["progress"].as_f64().unwrap() > 0.0
    });
    let asked = Instant::now();
    let (code, cancelled) = server.post(&format!("/api/cancel/{id}"));
    assert_eq!(code, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    assert!(
        asked.elapsed() < Duration::from_millis(1500),
        "{:?}",
        asked.elapsed()
    );
    let (code, again) = server.post(&format!("/api/cancel/{id}"));
    assert_eq!((code, again["status"].as_str()), (200, Some("cancelled")));
    let (code, p) = server.get(&format!("/api/download/{id}"));
    assert_eq!((code, p["code"].as_str()), (409, Some("not_ready")));
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        server.files_in("processed").is_empty(),
        "{:?}",
        server.files_in("processed")
    );
    assert!(
        server.files_in("uploads").is_empty(),
        "{:?}",
        server.files_in("uploads")
    );

    // A heavy model takes seconds per frame: cancel does not wait for the frame to end.
    let heavy = dir.path().join("heavy.mp4");
    testsrc_clip(&heavy, "256x144", 10, 2.0);
    let (_, task) = server.upload(&heavy, json!({"scale": 4, "quality": "quality"}));
    let id = task["taskId"].as_str().unwrap().to_string();
    server.wait_for(&id, 120, |s| s["stage"] == "upscaling");
    let asked = Instant::now();
    let (code, cancelled) = server.post(&format!("/api/cancel/{id}"));
    assert_eq!(
        (code, cancelled["status"].as_str()),
        (200, Some("cancelled")),
        "{cancelled}"
    );
    assert!(
        asked.elapsed() < Duration::from_millis(1500),
        "{:?}",
        asked.elapsed()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        server.files_in("processed").is_empty(),
        "{:?}",
        server.files_in("processed")
    );
    // The worker that stopped mid-frame was replaced: the next task runs.
    let small = dir.path().join("small.mp4");
    testsrc_clip(&small, "64x48", 10, 0.3);
    let (_, next) = server.upload(&small, json!({"scale": 2, "quality": "fast"}));
    let next = next["taskId"].as_str().unwrap().to_string();
    assert_eq!(server.wait_for(&next, 60, terminal)["status"], "completed");
}

/// Every refusal has its status and stable code.
#[test]
fn errors_have_status_and_code() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    testsrc_clip(&clip, "64x48", 10, 0.5);
    let text = dir.path().join("notes.mp4");
    std::fs::write(&text, "this is not a video\n".repeat(100)).unwrap();
    let big = dir.path().join("big.mp4");
    testsrc_clip(&big, "640x360", 25, 4.0);
    let server = Server::start(dir.path(), &[("MAX_CONTENT_LENGTH", "60000")]);
    let expect = |(code, body): (u16, Value), want: u16, want_code: &str| {
        assert_eq!(
            (code, body["code"].as_str()),
            (want, Some(want_code)),
            "{body}"
        );
        body
    };
    expect(server.get("/api/status/nope"), 404, "task_not_found");
    let b = expect(
        server.upload(&clip, json!({"scale": 5})),
        400,
        "invalid_settings",
    );
    assert_eq!(b["field"], "scale");
    let b = expect(
        server.upload(&clip, json!({"denoiseLevel": "high"})),
        400,
        "invalid_settings",
    );
    assert_eq!(b["field"], "denoiseLevel");
    let b = expect(
        server.upload(&clip, json!({"colour": 1})),
        400,
        "invalid_settings",
    );
    assert!(b["detail"].as_str().unwrap().contains("colour"));
    expect(
        server.upload(&clip, json!({"model": "no-such-model"})),
        400,
        "model_unavailable",
    );
    let b = expect(server.upload(&text, json!({})), 415, "unreadable_media");
    assert!(
        !b["detail"].as_str().unwrap().contains("uploads/"),
        "server path leaked: {b}"
    );
    // Too large: refused from the declared length, before any of the body is read...
    let head = "POST /api/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 10000000\r\n\r\n";
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    std::io::Write::write_all(&mut conn, head.as_bytes()).unwrap();
    let mut reply = String::new();
    let _ = std::io::Read::read_to_string(&mut conn, &mut reply);
    assert!(
        reply.starts_with("HTTP/1.1 413") && reply.contains("too_large"),
        "{reply}"
    );
    // ...and when streamed without a length, once the count passes the limit.
    let chunked = std::fs::read(&big).unwrap();
    let part = multipart::Part::reader(std::io::Cursor::new(chunked)).file_name("big.mp4");
    let form = multipart::Form::new().part("video", part);
    // The server answers 413 and closes as soon as the count passes the limit; the client,
    // still sending, may only see the closed connection. Either way the log has the 413.
    if let Ok(r) = server
        .client
        .post(server.url("/api/upload"))
        .multipart(form)
        .send()
    {
        assert_eq!(r.status().as_u16(), 413);
    }
    std::thread::sleep(Duration::from_millis(200));
    let log =
        std::fs::read_to_string(server.dir.join(format!("server-{}.log", server.port))).unwrap();
    assert_eq!(log.matches("status=413").count(), 2, "{log}");
    expect(server.get("/no/such/endpoint"), 404, "not_found");
    // Nothing was left behind by any refusal.
    assert!(
        server.files_in("uploads").is_empty(),
        "{:?}",
        server.files_in("uploads")
    );
    drop(server);

    // A full queue, and a disk too small: refused before the body is stored, yet read, so a
    // client that sends the whole video before reading the answer gets the answer.
    let server = Server::start(dir.path(), &[("VSR_MAX_QUEUED", "0")]);
    expect(server.upload(&big, json!({})), 429, "queue_full");
    drop(server);
    let config = dir.path().join("vsr.toml");
    std::fs::write(&config, "min_free_disk = 1000000000000000\n").unwrap();
    let server = Server::start(dir.path(), &[("VSR_CONFIG", config.to_str().unwrap())]);
    expect(server.upload(&big, json!({})), 507, "insufficient_storage");
}

/// Stopping the server mid-job (SIGTERM, then SIGKILL) loses nothing: on restart the task
/// is re-queued and completes.
#[test]
fn restart_mid_job_completes_the_task() {
    for signal in ["-TERM", "-KILL"] {
        let dir = tempfile::tempdir().unwrap();
        let clip = dir.path().join("clip.mp4");
        testsrc_clip(&clip, "160x90", 25, 6.0);
        let mut server = Server::start(dir.path(), &[]);
        let (_, task) = server.upload(&clip, json!({"scale": 2, "quality": "fast"}));
        let id = id(&task);
        server.wait_for(&id, 60, |s| s["progress"].as_f64().unwrap_or(0.0) > 5.0);
        server.signal(signal);
        std::thread::sleep(Duration::from_millis(500));
        server.spawn();
        let done = server.wait_for(&id, 180, terminal);
        assert_eq!(done["status"], "completed", "{signal}: {done}");
        let r = server
            .client
            .get(server.url(done["downloadUrl"].as_str().unwrap()))
            .send()
            .unwrap();
        let out = dir.path().join("result.mp4");
        std::fs::write(&out, r.bytes().unwrap()).unwrap();
        assert_eq!(probe_size(&out), "320,180,150", "{signal}");
        let leftovers: Vec<_> = server
            .files_in("processed")
            .into_iter()
            .filter(|f| f.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{signal}: {leftovers:?}");
    }
}

/// Results expire after the retention period: files removed, status expired, download 410.
#[test]
fn expiry_removes_files() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    testsrc_clip(&clip, "64x48", 10, 0.5);
    let server = Server::in_process(
        dir.path(),
        &[
            ("VSR_RETENTION_SECONDS", "2"),
            ("VSR_SWEEP_INTERVAL_SECONDS", "1"),
        ],
    );
    let (_, task) = server.upload(&clip, json!({"scale": 2, "quality": "fast"}));
    let id = id(&task);
    server.wait_for(&id, 60, |s| s["status"] == "completed");
    assert_eq!(server.files_in("processed").len(), 1);
    // The sweep marks the task first (so that a draft started meanwhile keeps its upload)
    // and removes the files right after: both must happen, in that order, within the wait.
    server.wait_for(&id, 20, |s| {
        s["status"] == "expired"
            && server.files_in("processed").is_empty()
            && server.files_in("uploads").is_empty()
    });
    let (code, body) = server.get(&format!("/api/download/{id}"));
    assert_eq!((code, body["code"].as_str()), (410, Some("expired")));
}

/// With API keys, everything but health needs one, tasks are private to their key, and
/// signed download links work without one.
#[test]
fn api_keys_and_signed_links() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    testsrc_clip(&clip, "64x48", 10, 0.5);
    let server = Server::in_process(dir.path(), &[("VSR_API_KEYS", "key-one,key-two")]);
    assert_eq!(server.get("/healthz").0, 200);
    let (code, body) = server.get("/api/tasks");
    assert_eq!((code, body["code"].as_str()), (401, Some("unauthorized")));
    let with = |key: &str| {
        server
            .client
            .get(server.url("/api/tasks"))
            .header("X-API-Key", key)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(with("key-one"), 200);
    assert_eq!(with("key-three"), 401);
    let form = multipart::Form::new()
        .text("settings", r#"{"scale":2,"quality":"fast"}"#)
        .file("video", &clip)
        .unwrap();
    let r = server
        .client
        .post(server.url("/api/upload"))
        .header("Authorization", "Bearer key-one")
        .multipart(form)
        .send()
        .unwrap();
    let task: Value = r.json().unwrap();
    let id = id(&task);
    let status = |key: &str| -> (u16, Value) {
        let r = server
            .client
            .get(server.url(&format!("/api/status/{id}")))
            .header("X-API-Key", key)
            .send()
            .unwrap();
        (r.status().as_u16(), r.json().unwrap())
    };
    assert_eq!(status("key-two").0, 404, "another key sees the task");
    let started = Instant::now();
    let done = loop {
        let (_, s) = status("key-one");
        if terminal(&s) {
            break s;
        }
        assert!(started.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(100));
    };
    let link = done["downloadUrl"].as_str().unwrap();
    assert_eq!(
        server
            .client
            .get(server.url(link))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    let forged = link.replace("signature=", "signature=00");
    assert_eq!(
        server
            .client
            .get(server.url(&forged))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        403
    );
}

/// The seed's own Python client works unchanged (when Python's `requests` is available).
#[test]
fn seed_python_example_works() {
    let python = std::env::var("VSR_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let has_requests = Command::new(&python)
        .args(["-c", "import requests"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_requests,
        "{python} has no `requests` (make test installs it; set VSR_TEST_PYTHON)"
    );
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("input.mp4");
    testsrc_clip(&clip, "64x48", 10, 0.5);
    let server = Server::in_process(dir.path(), &[]);
    let script = format!(
        r#"
import json, time
import requests

# Upload video
files = {{'video': open('input.mp4', 'rb')}}
settings = {{
    'scale': 4,
    'denoiseLevel': 0,
    'preserveDetails': True,
    'quality': 'balanced',
    'guideScale': 7.5
}}
data = {{'settings': json.dumps(settings)}}

response = requests.post('http://localhost:{port}/api/upload',
                        files=files,
                        data=data)
task_id = response.json()['taskId']

# Check status
status = requests.get(f'http://localhost:{port}/api/status/{{task_id}}').json()
while status['status'] not in ('completed', 'failed'):
    time.sleep(0.2)
    status = requests.get(f'http://localhost:{port}/api/status/{{task_id}}').json()
print(json.dumps(status))
"#,
        port = server.port
    );
    let out = Command::new(&python)
        .args(["-c", &script])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["status"], "completed", "{status}");
    assert_eq!(status["output"]["width"], 256);
    assert_eq!(
        status["settings"]["models"][0],
        "realcugan-se-up4x-conservative"
    );
}

/// The web page's flow over the API: a draft upload is probed and kept, previewed with any
/// settings, started, and its result compared frame by frame with the source. A repeated
/// upload with the same Idempotency-Key gives the same task.
#[test]
fn drafts_previews_frames_and_idempotency() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    testsrc_clip(&clip, "96x64", 10, 1.0);
    let server = Server::in_process(dir.path(), &[]);
    let form = || {
        multipart::Form::new()
            .text("settings", r#"{"scale":2,"quality":"fast"}"#)
            .text("start", "false")
            .file("video", &clip)
            .unwrap()
    };
    let upload = |key: &str| -> Value {
        let r = server
            .client
            .post(server.url("/api/upload"))
            .header("Idempotency-Key", key)
            .multipart(form())
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
        r.json().unwrap()
    };
    let draft = upload("k1");
    assert_eq!(
        upload("k1")["taskId"],
        draft["taskId"],
        "same key, same task"
    );
    assert_ne!(upload("k2")["taskId"], draft["taskId"]);
    // The same key for another request is refused, as is a key that is empty; `start` is a
    // yes/no in any case, and anything else is refused rather than read as yes.
    let send = |key: &str, settings: &str, start: &str| -> (u16, Value) {
        let form = multipart::Form::new()
            .text("settings", settings.to_string())
            .text("start", start.to_string())
            .file("video", &clip)
            .unwrap();
        let r = server
            .client
            .post(server.url("/api/upload"))
            .header("Idempotency-Key", key)
            .multipart(form)
            .send()
            .unwrap();
        (r.status().as_u16(), r.json().unwrap())
    };
    let (code, body) = send("k1", r#"{"scale":4,"quality":"fast"}"#, "false");
    assert_eq!(
        (code, body["code"].as_str()),
        (422, Some("idempotency_key_reused")),
        "{body}"
    );
    let (code, body) = send("", r#"{"scale":2}"#, "false");
    assert_eq!(
        (code, body["code"].as_str()),
        (400, Some("bad_request")),
        "{body}"
    );
    let (code, body) = send("k3", r#"{"scale":2,"quality":"fast"}"#, "False");
    assert_eq!(
        (code, body["status"].as_str()),
        (202, Some("draft")),
        "{body}"
    );
    let (code, body) = send("k4", r#"{"scale":2,"quality":"fast"}"#, "maybe");
    assert_eq!(
        (code, body["field"].as_str()),
        (400, Some("start")),
        "{body}"
    );
    let (code, body) = send("k5", "[2]", "false");
    assert_eq!(
        (code, body["code"].as_str()),
        (400, Some("invalid_settings")),
        "{body}"
    );
    let id = id(&draft);
    assert_eq!(draft["status"], "draft");
    assert_eq!(draft["input"]["width"], 96);

    // Preview with other settings than the upload's: 3x through the balanced preset.
    let r = server
        .client
        .post(server.url(&format!("/api/preview/{id}")))
        .json(&json!({"time": 0.5, "settings": {"scale": 3, "quality": "balanced"}}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let preview: Value = r.json().unwrap();
    assert_eq!(preview["models"][0], "realcugan-se-up3x");
    assert_eq!(png_size(&preview["before"]), (96, 64));
    assert_eq!(png_size(&preview["after"]), (288, 192));
    assert!(
        preview.get("stabilised").is_none(),
        "temporal stability is off: no consecutive frames"
    );

    // With temporal stability: consecutive frames of the window (here the whole frame), as
    // drawn and as stabilised, the first alike (it has no history), later ones not.
    let stabilised = |consecutive: Value| {
        server
            .client
            .post(server.url(&format!("/api/preview/{id}")))
            .json(&json!({"time": 0.2, "consecutive": consecutive,
                "settings": {"scale": 2, "quality": "fast", "temporalStability": "auto"}}))
            .send()
            .unwrap()
    };
    let r = stabilised(json!(3));
    assert_eq!(r.status().as_u16(), 200);
    let preview: Value = r.json().unwrap();
    let s = &preview["stabilised"];
    assert_eq!(s["temporalStability"], "auto");
    assert_eq!(
        s["window"],
        json!({"x": 0, "y": 0, "width": 192, "height": 128})
    );
    let frames = s["frames"].as_array().unwrap();
    assert_eq!(frames.len(), 3);
    let times: Vec<f64> = frames.iter().map(|f| f["time"].as_f64().unwrap()).collect();
    assert!(
        times.windows(2).all(|t| (t[1] - t[0] - 0.1).abs() < 1e-6),
        "consecutive frames of a 10 fps clip are 0.1 s apart: {times:?}"
    );
    for f in frames {
        assert_eq!(png_size(&f["without"]), (192, 128));
        assert_eq!(png_size(&f["with"]), (192, 128));
    }
    assert_eq!(frames[0]["with"], frames[0]["without"]);
    assert!(frames[0]["flickerWith"].is_null());
    assert!(frames[1..].iter().any(|f| f["with"] != f["without"]));
    assert!(frames[1..]
        .iter()
        .all(|f| f["flickerWithout"].as_f64().unwrap() > 0.0));
    let r = stabilised(json!(9));
    assert_eq!(r.status().as_u16(), 400);
    let problem: Value = r.json().unwrap();
    assert_eq!(
        (problem["code"].as_str(), problem["field"].as_str()),
        (Some("invalid_settings"), Some("consecutive"))
    );

    // Start with the final settings; a second start is refused.
    let r = server
        .client
        .post(server.url(&format!("/api/start/{id}")))
        .json(&json!({"scale": 2, "quality": "fast"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let (code, again) = server.post(&format!("/api/start/{id}"));
    assert_eq!((code, again["code"].as_str()), (409, Some("not_draft")));
    let (code, early) = server.get(&format!("/api/frames/{id}"));
    assert!(code == 409 || code == 200, "{early}");
    server.wait_for(&id, 60, |s| s["status"] == "completed");
    let (code, frames) = server.get(&format!("/api/frames/{id}?time=0.5"));
    assert_eq!(code, 200, "{frames}");
    assert_eq!(png_size(&frames["before"]), (96, 64));
    assert_eq!(png_size(&frames["after"]), (192, 128));
}

/// Width and height of a PNG data URL.
fn png_size(url: &Value) -> (u32, u32) {
    use base64::Engine;
    let b64 = url
        .as_str()
        .unwrap()
        .strip_prefix("data:image/png;base64,")
        .unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let info = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .unwrap();
    (info.info().width, info.info().height)
}

/// Models, health, metrics, the OpenAPI description (every route in it is served) and the
/// effective configuration.
#[test]
fn meta_endpoints_and_config() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::in_process(dir.path(), &[]);
    let (_, models) = server.get("/api/models");
    assert_eq!(models["presets"].as_array().unwrap().len(), 3);
    assert!(models["models"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["name"] == "realesr-animevideov3-x4" && m["installed"] == true));
    let (_, health) = server.get("/healthz");
    assert_eq!(health["status"], "ok");
    // The harness asks for the CPU (the test machine may have a GPU or not).
    assert_eq!(health["device"], "cpu", "{health}");
    assert!(
        health["device_reason"].as_str().unwrap().contains("CPU"),
        "{health}"
    );
    // The server's own worker registers by its heartbeat, in health and in the workers list.
    let started = Instant::now();
    let workers = loop {
        let (code, list) = server.get("/api/workers");
        assert_eq!(code, 200, "{list}");
        if !list["workers"].as_array().unwrap().is_empty() {
            break list;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{list}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let worker = &workers["workers"][0];
    assert_eq!(
        (&worker["device"], &worker["standalone"], &worker["task"]),
        (&json!("cpu"), &json!(false), &Value::Null),
        "{workers}"
    );
    let (_, health) = server.get("/healthz");
    assert_eq!(health["live_workers"], 1, "{health}");
    let metrics = server
        .client
        .get(server.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("vsr_tasks{status=\"completed\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains("vsr_http_requests_total{class=\"2xx\"}"));
    let (_, api) = server.get("/api/openapi.json");
    let paths = api["paths"].as_object().unwrap();
    for path in [
        "/api/upload",
        "/api/status/{id}",
        "/api/progress/{id}",
        "/api/events/{id}",
        "/api/download/{id}",
        "/api/cancel/{id}",
        "/api/tasks",
        "/api/models",
    ] {
        assert!(paths.contains_key(path), "{path} missing from OpenAPI");
    }
    // Response bodies carry their schemas, generated from the handlers' types.
    let ok = &paths["/api/status/{id}"]["get"]["responses"]["200"];
    let name = ok["content"]["application/json"]["schema"]["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
        .unwrap_or_else(|| panic!("no schema for the status: {ok}"));
    let task_schema = &api["components"]["schemas"][name];
    for field in [
        "taskId",
        "status",
        "progress",
        "downloadUrl",
        "settings",
        "input",
    ] {
        assert!(
            task_schema["properties"][field].is_object(),
            "{field} missing from {name}: {task_schema}"
        );
    }
    let schemas = api["components"]["schemas"].as_object().unwrap();
    for needed in [
        "InputFacts",
        "ProgressView",
        "TaskList",
        "Health",
        "ProblemBody",
    ] {
        assert!(schemas.contains_key(needed), "no {needed} schema");
    }
    for (path, ops) in paths {
        let url = path
            .replace("{id}", "no-such-task")
            .replace("{name}", "style.css");
        for method in ops.as_object().unwrap().keys() {
            let r = server
                .client
                .request(method.to_uppercase().parse().unwrap(), server.url(&url))
                .send()
                .unwrap();
            let body = r.text().unwrap_or_default();
            assert!(
                !body.contains("no such endpoint"),
                "{method} {path} is not served"
            );
        }
    }
    let out = Command::new(env!("CARGO_BIN_EXE_vsr"))
        .args(["serve", "--print-config", "--port", "6123"])
        .env("SECRET_KEY", "hush")
        .env("MAX_CONTENT_LENGTH", "12345")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("port = 6123") && text.contains("max_content_length = 12345"),
        "{text}"
    );
    assert!(!text.contains("hush"), "secret printed: {text}");
}

/// `VSR_LOG_JSON=1` (or `--log-json`): one JSON object per line, each request with its id and
/// each job line with its task id.
#[test]
fn json_logs_carry_request_and_task_ids() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    testsrc_clip(&clip, "64x48", 10, 0.3);
    let server = Server::start(dir.path(), &[("VSR_LOG_JSON", "1")]);
    let (_, task) = server.upload(&clip, json!({"scale": 2, "quality": "fast"}));
    let id = id(&task);
    server.wait_for(&id, 60, terminal);
    std::thread::sleep(Duration::from_millis(300));
    let log =
        std::fs::read_to_string(server.dir.join(format!("server-{}.log", server.port))).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines
        .iter()
        .any(|l| l["fields"]["request_id"].is_string() && l["fields"]["path"] == "/api/upload"));
    let job_lines: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"].as_str().unwrap_or("").ends_with("worker") && l["span"].is_object())
        .collect();
    assert!(!job_lines.is_empty(), "{log}");
    assert!(
        job_lines.iter().all(|l| l["span"]["task"] == id.as_str()),
        "{log}"
    );
}

/// `POST /api/images`: a PNG with alpha and a JPEG come back upscaled in their own format
/// (the alpha kept); a file that is no image is 415 `unreadable_media`, a form without one
/// 400 `missing_image`; nothing is left in the upload folder.
#[test]
fn images_are_upscaled_in_their_own_format() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::in_process(dir.path(), &[]);
    let (clear, photo) = (dir.path().join("clear.png"), dir.path().join("photo.jpg"));
    let source = "testsrc2=size=40x30";
    common::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &format!("{source},format=rgba,geq=r='r(X,Y)':g='g(X,Y)':b='b(X,Y)':a='6*X'"),
        "-frames:v",
        "1",
        "-pix_fmt",
        "rgba",
        clear.to_str().unwrap(),
    ]);
    // `frames` of the source into `to`, with `muxing` arguments.
    let make = |frames: &str, muxing: &[&str], to: &Path| {
        let mut args = vec!["-f", "lavfi", "-i", source, "-frames:v", frames];
        args.extend(muxing);
        args.push(to.to_str().unwrap());
        common::ffmpeg(&args);
    };
    make("1", &[], &photo);
    let post = |bytes: Vec<u8>, name: &str, field: &str| {
        let part = multipart::Part::bytes(bytes).file_name(name.to_string());
        let form = multipart::Form::new()
            .text(
                "settings",
                json!({"scale": 2, "quality": "fast"}).to_string(),
            )
            .part(field.to_string(), part);
        server
            .client
            .post(server.url("/api/images"))
            .multipart(form)
            .send()
            .unwrap()
    };
    let r = post(std::fs::read(&clear).unwrap(), "clear.png", "image");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("clear_80x60.png"));
    let bytes = r.bytes().unwrap();
    let reader = png::Decoder::new(std::io::Cursor::new(bytes.to_vec()))
        .read_info()
        .unwrap();
    let info = reader.info();
    assert_eq!(
        (info.width, info.height, info.color_type),
        (80, 60, png::ColorType::Rgba)
    );
    let r = post(std::fs::read(&photo).unwrap(), "photo.jpg", "image");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    assert_eq!(&r.bytes().unwrap()[..2], b"\xff\xd8");
    // The content decides the format, not the name; a name that is not ASCII is kept in
    // `filename*` (RFC 6266) beside an ASCII `filename`.
    let r = post(std::fs::read(&clear).unwrap(), "été.jpg", "image");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(
        r.headers()["content-disposition"].to_str().unwrap(),
        "attachment; filename=\"_t__80x60.png\"; filename*=UTF-8''%C3%A9t%C3%A9_80x60.png"
    );

    let r = post(b"not an image at all".to_vec(), "fake.png", "image");
    assert_eq!(r.status().as_u16(), 415);
    let body: Value = r.json().unwrap();
    assert_eq!(body["code"], "unreadable_media", "{body}");
    // An animation is refused as one, not cut to its first frame.
    let anim = dir.path().join("anim.png");
    make("3", &["-f", "apng"], &anim);
    let r = post(std::fs::read(&anim).unwrap(), "anim.png", "image");
    assert_eq!(r.status().as_u16(), 415);
    let body: Value = r.json().unwrap();
    assert_eq!(body["code"], "unsupported_media_type", "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("animation"),
        "{body}"
    );
    let r = post(std::fs::read(&photo).unwrap(), "photo.jpg", "picture");
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().unwrap();
    assert_eq!(body["code"], "missing_image", "{body}");
    assert!(
        server.files_in("uploads").is_empty(),
        "{:?}",
        server.files_in("uploads")
    );
}

/// A camera's MOV with PCM audio, which MP4 cannot hold: the result is Matroska, with the
/// audio as it was (an MP4 result would fail after every frame was upscaled, and the service's
/// users cannot choose the container).
#[test]
fn results_keep_what_mp4_cannot_hold() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("camera.mov");
    let video = "testsrc2=size=64x48:rate=10:duration=1";
    ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            video,
            "-f",
            "lavfi",
            "-i",
            "sine=duration=1",
        ]
        .into_iter()
        .chain([
            "-c:v",
            "libx264",
            "-c:a",
            "pcm_s16le",
            clip.to_str().unwrap(),
        ])
        .collect::<Vec<_>>(),
    );
    let server = Server::in_process(dir.path(), &[]);
    let (code, task) = server.upload(&clip, json!({"scale": 2, "quality": "fast"}));
    assert_eq!(code, 202, "{task}");
    let done = server.wait_for(&id(&task), 120, terminal);
    assert_eq!(done["status"], "completed", "{done}");
    let link = server.url(done["downloadUrl"].as_str().unwrap());
    let r = server.client.get(link).send().unwrap();
    let name = r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(name.contains("camera_128x96.mkv"), "{name}");
    let out = dir.path().join("result.mkv");
    std::fs::write(&out, r.bytes().unwrap()).unwrap();
    assert_eq!(probe_size(&out), "128,96,10");
    let audio = ffprobe(
        &[
            "-select_streams",
            "a:0",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
        ],
        &out,
    );
    assert_eq!(audio.trim(), "pcm_s16le");
}
