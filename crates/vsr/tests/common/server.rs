//! A real `vsr serve` on a loopback port, for the service and web page tests.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::{multipart, Client};
use serde_json::Value;

/// A server on a free port with its own folders and database, stopped when dropped.
pub struct Server {
    pub child: Option<Child>,
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
        let child = Command::new(env!("CARGO_BIN_EXE_vsr"))
            .args(["serve", "--port", &self.port.to_string(), "--workers", "1"])
            .env("UPLOAD_FOLDER", d.join("uploads"))
            .env("PROCESSED_FOLDER", d.join("processed"))
            .env("VSR_DATABASE", d.join("vsr.db"))
            .env("VSR_THREADS", "2")
            .env("VSR_DEVICE", "cpu")
            .env("SECRET_KEY", "test-secret")
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
        Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        child.wait().unwrap();
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

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.signal("-TERM");
        }
    }
}
