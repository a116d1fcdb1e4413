//! The shared task store, PostgreSQL (the server `tools/with_postgres.sh` starts, as `make
//! test` runs the suite): the database cut off mid-run makes the API answer 503
//! `store_unavailable` at once instead of hanging or failing with a 500, and once it is back
//! the running task completes with nothing lost.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::server::{id, terminal, Server};
use serde_json::json;

/// A TCP relay between the service and PostgreSQL that can cut the line: while cut, it
/// closes every open connection and refuses new ones, as a network failure would.
struct Relay {
    port: u16,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (c, o) = (cut.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if c.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let mut open = o.lock().unwrap();
                open.push(client.try_clone().unwrap());
                open.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Relay { port, cut, open }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

#[test]
fn database_cut_off_mid_run_answers_503_then_completes() {
    let direct = common::new_database("outage");
    // postgres://vsr@HOST:PORT/NAME, reached through the relay instead.
    let (host, name) = direct
        .split_once('@')
        .and_then(|(_, rest)| rest.split_once('/'))
        .unwrap();
    let relay = Relay::start(host.parse().unwrap());
    let database = format!("postgres://vsr@127.0.0.1:{}/{name}", relay.port);

    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    common::testsrc_clip(&clip, "64x36", 10, 30.0);
    let server = Server::start(dir.path(), &[("VSR_DATABASE", &database)]);
    let (code, task) = server.upload(&clip, json!({"scale": 2, "quality": "fast"}));
    assert_eq!(code, 202, "{task}");
    let id = id(&task);
    server.wait_for(&id, 60, |s| s["currentFrame"].as_u64().unwrap_or(0) > 20);

    relay.cut();
    let cut_at = Instant::now();
    let asked = Instant::now();
    let (code, body) = server.get(&format!("/api/status/{id}"));
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["code"], "store_unavailable", "{body}");
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(server.get("/api/tasks").0, 503);
    while cut_at.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(500));
    }
    relay.restore();

    let done = server.wait_for(&id, 120, terminal);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["currentFrame"], 300, "{done}");
}

/// A worker on its own (`vsr worker --database URL`, no server beside it), from `cwd`.
fn standalone_worker(
    cwd: &std::path::Path,
    server: &Server,
    env: &[(&str, &str)],
) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_vsr"))
        .args(["worker", "--database", env[0].1])
        .current_dir(cwd)
        .env("UPLOAD_FOLDER", server.dir.join("uploads"))
        .env("PROCESSED_FOLDER", server.dir.join("processed"))
        .env("VSR_THREADS", "2")
        .env("VSR_DEVICE", "cpu")
        .envs(env[1..].iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(cwd.join("worker.log")).unwrap())
        .spawn()
        .unwrap()
}

/// An API node with no workers and workers of their own sharing only the database: a task
/// completes; its worker SIGKILLed mid-run (no clean-up at all) loses it only until its lease
/// lapses, when another worker takes it over and resumes after the finished segments.
#[test]
fn standalone_workers_take_over_a_vanished_one() {
    let database = common::new_database("workers");
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    common::keyframed_clip(&clip, "64x36", 10, 60);
    let shared = [
        ("VSR_DATABASE", database.as_str()),
        ("VSR_LEASE_SECONDS", "2"),
        ("VSR_SEGMENT_SECONDS", "5"),
    ];
    let mut api_env = shared.to_vec();
    api_env.extend([("VSR_WORKERS", "0"), ("VSR_SWEEP_INTERVAL_SECONDS", "1")]);
    let server = Server::start(dir.path(), &api_env);
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = standalone_worker(a_dir.path(), &server, &shared);
    let (_, task) = server.upload(&clip, json!({"scale": 2, "quality": "fast"}));
    let id = id(&task);
    server.wait_for(&id, 60, |s| s["currentFrame"].as_u64().unwrap_or(0) > 130);
    a.kill().unwrap();
    a.wait().unwrap();
    let mut b = standalone_worker(b_dir.path(), &server, &shared);
    let done = server.wait_for(&id, 120, terminal);
    let _ = b.kill();
    let _ = b.wait();
    let log = std::fs::read_to_string(b_dir.path().join("worker.log")).unwrap();
    assert_eq!(done["status"], "completed", "{done}\n{log}");
    assert_eq!(done["currentFrame"], 600, "{done}");
    let a_log = std::fs::read_to_string(a_dir.path().join("worker.log")).unwrap();
    assert!(
        done["resumedFrames"].as_u64().unwrap() >= 100,
        "{done}\nA:\n{a_log}\nB:\n{log}"
    );
}
