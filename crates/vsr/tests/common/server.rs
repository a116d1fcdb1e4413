//! A real `vsr serve` on a loopback port, for the service and web page tests: as a process
//! of the binary (`Server::start`, for what crosses the process boundary: signals, restarts,
//! crashes, logs, memory) or in this test process through the library
//! (`Server::in_process`), its workers still processes of the binary.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::{multipart, Client};
use serde_json::Value;

/// A server on a free port with its own folders and database, stopped when dropped.
pub struct Server {
    pub child: Option<Child>,
    /// The server running in this process, when started by `in_process`.
    library: Option<InProcess>,
    pub port: u16,
    pub dir: PathBuf,
    env: Vec<(String, String)>,
    pub client: Client,
}

impl Server {
    pub fn start(dir: &Path, env: &[(&str, &str)]) -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut s = Server {
            child: None,
            library: None,
            port,
            dir: dir.to_path_buf(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            client: Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        };
        s.spawn();
        s
    }

    pub fn spawn(&mut self) {
        let d = &self.dir;
        // One worker unless the test's environment asks for more.
        let workers = self
            .env
            .iter()
            .find(|(k, _)| k == "VSR_WORKERS")
            .map_or("1".to_string(), |(_, v)| v.clone());
        let child = Command::new(env!("CARGO_BIN_EXE_vsr"))
            .args([
                "serve",
                "--port",
                &self.port.to_string(),
                "--workers",
                &workers,
            ])
            .envs(harness_env(d))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join(format!("server-{}.log", self.port))).unwrap())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let started = Instant::now();
        while self.client.get(self.url("/healthz")).send().is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "server did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The service run in this process by `vsr_service::serve`, configured as `start` does
    /// through the environment (the same variables, applied to the config directly).
    pub fn in_process(dir: &Path, env: &[(&str, &str)]) -> Server {
        let d = dir.to_path_buf();
        let mut vars = harness_env(&d);
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let get = |k: &str| {
            vars.iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        let mut config = vsr_service::config::ServiceConfig::default();
        config.apply_env(get).expect("test settings are valid");
        config.worker_program = Some(env!("CARGO_BIN_EXE_vsr").into());
        let mut base = vsr_media::config::Config::load(None);
        if let Some(custom) = get("VSR_CUSTOM_MODELS_DIR") {
            base.custom_models_dir = custom.into();
        }
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let shutdown = async move {
                    let _ = stopped.await;
                };
                vsr_service::serve(listener, shutdown, base, config)
                    .await
                    .expect("the service runs");
            });
        });
        let s = Server {
            child: None,
            library: Some(InProcess {
                stop: Some(stop),
                thread: Some(thread),
            }),
            port,
            dir: d,
            env: Vec::new(),
            client: Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        };
        let started = Instant::now();
        while s.client.get(s.url("/healthz")).send().is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        let r = self.client.get(self.url(path)).send().unwrap();
        (r.status().as_u16(), r.json().unwrap_or(Value::Null))
    }

    pub fn post(&self, path: &str) -> (u16, Value) {
        let r = self.client.post(self.url(path)).send().unwrap();
        (r.status().as_u16(), r.json().unwrap_or(Value::Null))
    }

    pub fn upload(&self, video: &Path, settings: Value) -> (u16, Value) {
        let form = multipart::Form::new()
            .text("settings", settings.to_string())
            .file("video", video)
            .unwrap();
        self.send_form(form, &[])
    }

    /// Posts `form` to `/api/upload` with extra `headers`: the status and the JSON answer.
    pub fn send_form(&self, form: multipart::Form, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut request = self.client.post(self.url("/api/upload")).multipart(form);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let r = request.send().unwrap();
        (r.status().as_u16(), r.json().unwrap_or(Value::Null))
    }

    /// Polls the task until `done` says so, returning its last status.
    pub fn wait_for(&self, id: &str, secs: u64, done: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            let (_, status) = self.get(&format!("/api/status/{id}"));
            if done(&status) {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(secs),
                "timed out: {status}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn signal(&mut self, signal: &str) {
        let mut child = self.child.take().unwrap();
        super::signal(child.id(), signal);
        child.wait().unwrap();
    }

    /// Downloads a completed task's result (`status` is its status) to `to`.
    pub fn download(&self, status: &Value, to: &Path) {
        let link = status["downloadUrl"].as_str().expect("a completed task");
        let r = self.client.get(self.url(link)).send().unwrap();
        assert_eq!(r.status().as_u16(), 200);
        std::fs::write(to, r.bytes().unwrap()).unwrap();
    }

    pub fn files_in(&self, folder: &str) -> Vec<String> {
        std::fs::read_dir(self.dir.join(folder))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The settings every test server starts with: its own folders and database under `dir`,
/// two threads, the CPU, a known link secret; a test's own variables come after.
fn harness_env(dir: &Path) -> Vec<(String, String)> {
    let path = |p: &str| dir.join(p).display().to_string();
    vec![
        ("UPLOAD_FOLDER".into(), path("uploads")),
        ("PROCESSED_FOLDER".into(), path("processed")),
        ("VSR_DATABASE".into(), test_database(dir)),
        ("VSR_THREADS".into(), "2".into()),
        ("VSR_DEVICE".into(), "cpu".into()),
        ("SECRET_KEY".into(), "test-secret".into()),
    ]
}

/// The database a test server uses: a SQLite file in `dir`; or, when the suite runs against
/// PostgreSQL (`VSR_TEST_STORE=postgres` under `tools/with_postgres.sh`, as `make test` runs
/// it), a database of its own on that server, named from `dir` so that a restarted server
/// finds its tasks.
fn test_database(dir: &Path) -> String {
    if std::env::var("VSR_TEST_STORE").as_deref() != Ok("postgres") {
        return dir.join("vsr.db").display().to_string();
    }
    let server = std::env::var("VSR_TEST_POSTGRES")
        .expect("VSR_TEST_STORE=postgres needs a server: run under tools/with_postgres.sh");
    let mut hash = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(dir, &mut hash);
    let name = format!("vsr_{:016x}", std::hash::Hasher::finish(&hash));
    // Fails harmlessly when a restarted server's database exists already.
    let _ = Command::new("psql")
        .args([server.as_str(), "-qc", &format!("CREATE DATABASE {name}")])
        .output();
    let (base, _) = server.rsplit_once('/').expect("a URL with a database");
    format!("{base}/{name}")
}

/// A server running in this process: how to stop it and wait for it.
struct InProcess {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.signal("-TERM");
        }
        if let Some(mut library) = self.library.take() {
            if let Some(stop) = library.stop.take() {
                let _ = stop.send(());
            }
            if let Some(thread) = library.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// Whether a task's status is an end.
pub fn terminal(s: &Value) -> bool {
    ["completed", "failed", "cancelled", "expired"].contains(&s["status"].as_str().unwrap_or(""))
}

/// The task id in an upload's answer.
pub fn id(v: &Value) -> String {
    v["taskId"]
        .as_str()
        .unwrap_or_else(|| panic!("no taskId in {v}"))
        .to_string()
}

/// Waits up to `secs` until none of `pids` runs (each exited, or a zombie nobody reaps).
pub fn wait_until_gone(pids: &[u32], secs: u64) {
    let running = |pid: &u32| {
        // The state is the field after the command's closing parenthesis.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| {
                !stat
                    .rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('Z'))
            })
            .unwrap_or(false)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while pids.iter().any(running) {
        assert!(
            std::time::Instant::now() < deadline,
            "{pids:?} still running"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The processes `pid` started (a server's workers).
pub fn children_of(pid: u32) -> Vec<u32> {
    // Each thread lists the children it spawned.
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .flat_map(|t| {
            std::fs::read_to_string(t.path().join("children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}
