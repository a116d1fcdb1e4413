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
    let server_url = std::env::var("VSR_TEST_POSTGRES")
        .expect("VSR_TEST_POSTGRES is not set: run under tools/with_postgres.sh (make test does)");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let name = format!("vsr_outage_{}_{nanos}", std::process::id());
    let created = std::process::Command::new("psql")
        .args([
            server_url.as_str(),
            "-qc",
            &format!("CREATE DATABASE {name}"),
        ])
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    let host = server_url
        .split('@')
        .nth(1)
        .and_then(|h| h.split('/').next())
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
