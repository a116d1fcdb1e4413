//! Many machines: an API node and workers of their own that share nothing but PostgreSQL
//! (`tools/with_postgres.sh`) and an S3-compatible object store (s3s-fs, which `make test`
//! builds; `VSR_TEST_S3FS`), each with its own working folders as if on its own machine.
//! Workers SIGKILLed along the way lose nothing: their tasks are taken over once the lease
//! lapses and resume from the segments they had sent to the store; the results are frame
//! for frame those of one machine on its own.
#![allow(clippy::print_stdout)] // a test reports what it measured

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::server::{id, terminal, Server};
use common::{framemd5, signal};
use serde_json::{json, Value};
use vsr_service::store::{TaskId, TaskStore, WorkerId};

const BUCKET: &str = "media";
const ACCESS_KEY: &str = "vsr-test";
const SECRET_KEY: &str = "vsr-test-secret";

/// s3s-fs on a loopback port, serving the bucket [`BUCKET`] from a folder; stopped when
/// dropped.
struct S3Server {
    child: Child,
    endpoint: String,
    dir: PathBuf,
    port: u16,
}

impl S3Server {
    fn start(dir: &Path) -> S3Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        S3Server {
            child: S3Server::spawn(dir, port),
            endpoint: format!("http://127.0.0.1:{port}"),
            dir: dir.to_path_buf(),
            port,
        }
    }

    fn spawn(dir: &Path, port: u16) -> Child {
        let program = std::env::var("VSR_TEST_S3FS")
            .expect("VSR_TEST_S3FS is not set: `make test` builds s3s-fs and sets it");
        let root = dir.join("s3");
        std::fs::create_dir_all(root.join(BUCKET)).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("s3.log"))
            .unwrap();
        let child = Command::new(program)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&root)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "s3s-fs did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    }

    /// Stops the server (as a crash or a cut network would: nothing answers).
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port and folder.
    fn restart(&mut self) {
        self.child = S3Server::spawn(&self.dir, self.port);
    }

    /// The variables that point a server or worker at this store.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("VSR_STORAGE", format!("s3://{BUCKET}/vsr")),
            ("VSR_S3_ENDPOINT", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("VSR_S3_RETRY_SECONDS", "10".into()),
        ]
    }

    /// The store, through the library, as a worker opens it.
    fn storage(&self) -> vsr_service::storage::S3 {
        let mut config = vsr_service::config::ServiceConfig::default();
        let env = self.env();
        config
            .apply_env(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
            .unwrap();
        vsr_service::storage::S3::open(config.storage.as_ref().unwrap()).unwrap()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A file larger than one part goes up in parts and comes back whole; a missing object is
/// `false`, not an error; work files are listed by result; removal is idempotent.
#[test]
fn object_store_keeps_large_files_whole() {
    use vsr_service::storage::{Key, Object, Storage};
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(dir.path());
    let storage = s3.storage();
    let big = dir.path().join("big.bin");
    let bytes: Vec<u8> = (0..40u32 << 20)
        .map(|i| ((i * 2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&big, &bytes).unwrap();
    let id = vsr_service::store::TaskId::new();
    let result = Key::new(&id, "mp4");
    let object = Object::Result(result.clone());
    let work = Object::Work {
        result: result.clone(),
        dir: format!(".{result}.vsr-0123456789abcdef"),
        file: "seg-000000.json".into(),
    };
    runtime().block_on(async {
        assert_eq!(
            storage.put(&object, &big).await.unwrap(),
            bytes.len() as u64
        );
        let back = dir.path().join("back.bin");
        assert!(storage.get(&object, &back).await.unwrap());
        assert!(
            std::fs::read(&back).unwrap() == bytes,
            "the file came back changed"
        );
        let missing = Object::Upload(Key::new(&id, "mkv"));
        assert!(!storage.get(&missing, &back).await.unwrap());
        storage.put(&work, &big).await.unwrap();
        assert_eq!(storage.work_of(&result).await.unwrap(), vec![work.clone()]);
        storage.delete(&work).await.unwrap();
        storage.delete(&work).await.unwrap();
        assert!(storage.work_of(&result).await.unwrap().is_empty());
        storage.delete(&object).await.unwrap();
        assert!(!storage.get(&object, &back).await.unwrap());
    });
}

/// Worker processes, killed when dropped: a failed assertion leaves none running.
struct Workers(Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for w in &mut self.0 {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

/// A worker on its own in `dir` (its own folders: nothing shared but the database and the
/// object store).
fn worker(dir: &Path, env: &[(&'static str, String)]) -> Child {
    std::fs::create_dir_all(dir).unwrap();
    Command::new(env!("CARGO_BIN_EXE_vsr"))
        .args(["worker"])
        .current_dir(dir)
        .env("UPLOAD_FOLDER", dir.join("uploads"))
        .env("PROCESSED_FOLDER", dir.join("processed"))
        .env("VSR_THREADS", "1")
        .env("VSR_DEVICE", "cpu")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("worker.log")).unwrap())
        .spawn()
        .unwrap()
}

/// The mixed work: clips and settings, each sent several times.
fn kinds(dir: &Path) -> Vec<(PathBuf, Value)> {
    let (short, tracks) = (dir.join("short.mp4"), dir.join("tracks.mkv"));
    common::keyframed_clip(&short, "64x36", 10, 4);
    let tracks_made = common::clip_with_tracks(dir, 3);
    std::fs::rename(tracks_made, &tracks).unwrap();
    vec![
        (short.clone(), json!({"scale": 2, "quality": "fast"})),
        (
            short,
            json!({"scale": 2, "quality": "fast", "codec": "h265"}),
        ),
        (
            tracks,
            json!({"scale": 2, "quality": "fast", "denoiseLevel": 1}),
        ),
    ]
}

/// The result of one task of each kind on one machine alone (SQLite, folders, one worker),
/// cut into segments of `segment_seconds` as the cluster cuts them (each segment is encoded
/// on its own): what the cluster's results must equal.
fn single_machine(
    dir: &Path,
    kinds: &[(PathBuf, Value)],
    segment_seconds: &str,
) -> Vec<Vec<String>> {
    let server = Server::start(
        dir,
        &[
            ("VSR_SEGMENT_SECONDS", segment_seconds),
            ("VSR_THREADS", "1"),
            ("VSR_DATABASE", &dir.join("one.db").display().to_string()),
        ],
    );
    kinds
        .iter()
        .enumerate()
        .map(|(n, (clip, settings))| {
            let (code, task) = server.upload(clip, settings.clone());
            assert_eq!(code, 202, "{task}");
            let done = server.wait_for(&id(&task), 120, terminal);
            assert_eq!(done["status"], "completed", "{done}");
            let out = dir.join(format!("reference-{n}.mp4"));
            server.download(&done, &out);
            framemd5(&out)
        })
        .collect()
}

#[test]
fn api_node_and_workers_sharing_only_postgres_and_s3_survive_kills() {
    const TASKS: usize = 20;
    const KILLS: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let kinds = kinds(dir.path());
    let reference_dir = dir.path().join("one-machine");
    std::fs::create_dir_all(&reference_dir).unwrap();
    let reference = single_machine(&reference_dir, &kinds, "1");

    let s3 = S3Server::start(dir.path());
    let database = common::new_database("cluster");
    let mut shared = s3.env();
    shared.extend([
        ("VSR_DATABASE", database.clone()),
        ("VSR_LEASE_SECONDS", "2".into()),
        ("VSR_SEGMENT_SECONDS", "1".into()),
    ]);
    let api_dir = dir.path().join("api");
    std::fs::create_dir_all(&api_dir).unwrap();
    let mut api_env: Vec<(&str, &str)> = shared.iter().map(|(k, v)| (*k, v.as_str())).collect();
    api_env.extend([("VSR_WORKERS", "0"), ("VSR_SWEEP_INTERVAL_SECONDS", "1")]);
    let api = Server::start(&api_dir, &api_env);

    let mut started = 0;
    let mut spawn = |workers: &mut Workers| {
        started += 1;
        workers.0.push(worker(
            &dir.path().join(format!("worker-{started}")),
            &shared,
        ));
    };
    let mut workers = Workers(Vec::new());
    for _ in 0..3 {
        spawn(&mut workers);
    }
    let tasks: Vec<(String, usize)> = (0..TASKS)
        .map(|n| {
            let kind = n % kinds.len();
            let (code, task) = api.upload(&kinds[kind].0, kinds[kind].1.clone());
            assert_eq!(code, 202, "{task}");
            (id(&task), kind)
        })
        .collect();

    // Every worker says who it is, where and on what.
    let seen = Instant::now();
    let listed = loop {
        let (code, list) = api.get("/api/workers");
        assert_eq!(code, 200, "{list}");
        if list["workers"].as_array().unwrap().len() == 3 {
            break list;
        }
        assert!(seen.elapsed() < Duration::from_secs(20), "{list}");
        std::thread::sleep(Duration::from_millis(200));
    };
    for w in listed["workers"].as_array().unwrap() {
        assert_eq!(w["device"], "cpu", "{w}");
        assert_eq!(w["standalone"], true, "{w}");
        assert!(!w["host"].as_str().unwrap().is_empty(), "{w}");
    }

    // Kills at seeded random moments, each of a worker the database shows holding a task
    // that no kill has hit yet. Three deaths in a row fail a task by design (`worker_crashed`),
    // which is not what this test is about, so no task may take two. The workers list is as
    // old as the last heartbeat, longer than a task of these clips takes (a kill aimed from it
    // alone once landed on tasks it did not name, making a third death: CI on 2026-12-03 and
    // 2026-12-07), so it only picks a candidate: the candidate is stopped (SIGSTOP: it can
    // neither finish its task nor claim another), the tasks its rows hold are read, and it is
    // killed only if none of them was hit before (resumed otherwise).
    let mut seed: u64 = 0x5eed_c1a5;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let rt = runtime();
    let store = rt
        .block_on(vsr_service::store::PostgresStore::open(&database))
        .unwrap();
    let held_by = |worker: WorkerId| rt.block_on(store.running_on(worker)).unwrap();
    let mut hit: std::collections::HashSet<TaskId> = Default::default();
    let mut kills = 0;
    let deadline = Instant::now() + Duration::from_secs(900);
    while kills < KILLS {
        assert!(
            Instant::now() < deadline,
            "the kills never found work running"
        );
        std::thread::sleep(Duration::from_millis(400 + next() % 1200));
        let unfinished = tasks
            .iter()
            .filter(|(id, _)| !terminal(&api.get(&format!("/api/status/{id}")).1))
            .count();
        if unfinished == 0 {
            break;
        }
        let (_, list) = api.get("/api/workers");
        let listed: Vec<(u32, WorkerId)> = list["workers"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|w| {
                let raw = w["id"].as_str()?.parse().ok()?;
                Some((w["pid"].as_u64()? as u32, WorkerId::from_raw(raw)))
            })
            .filter(|(pid, _)| workers.0.iter().any(|w| w.id() == *pid))
            .collect();
        if listed.is_empty() {
            continue;
        }
        let (pid, victim_id) = listed[(next() % listed.len() as u64) as usize];
        assert!(signal(pid, "-STOP"), "worker {pid} gone");
        let held = held_by(victim_id);
        if held.is_empty() || held.iter().any(|task| hit.contains(task)) {
            assert!(signal(pid, "-CONT"), "worker {pid} gone");
            continue;
        }
        let victim = workers.0.iter().position(|w| w.id() == pid).unwrap();
        let mut gone = workers.0.swap_remove(victim);
        gone.kill().unwrap();
        gone.wait().unwrap();
        hit.extend(held);
        kills += 1;
        spawn(&mut workers);
    }
    assert!(
        kills >= 3,
        "the work ended after {kills} kills: too few to show anything"
    );

    let done: Vec<Value> = tasks
        .iter()
        .map(|(id, _)| api.wait_for(id, 900, terminal))
        .collect();
    for (status, (id, kind)) in done.iter().zip(&tasks) {
        assert_eq!(status["status"], "completed", "{status}");
        let out = dir.path().join(format!("{id}.mp4"));
        api.download(status, &out);
        assert!(
            framemd5(&out) == reference[*kind],
            "task {id} ({kind}) differs from one machine's result"
        );
    }
    let resumed: u64 = done
        .iter()
        .map(|s| s["resumedFrames"].as_u64().unwrap_or(0))
        .sum();
    println!("{kills} kills; {resumed} frames taken from segments a killed worker stored");

    // Completed results keep no work in the store; each task's worker dropped its copies.
    let storage = s3.storage();
    runtime().block_on(async {
        use vsr_service::storage::{Key, Storage};
        for (id, kind) in &tasks {
            let ext = kinds[*kind].0.extension().unwrap().to_str().unwrap();
            let key = Key::new(
                &vsr_service::store::TaskId::parse(id).unwrap(),
                if ext == "mkv" { "mkv" } else { "mp4" },
            );
            assert!(
                storage.work_of(&key).await.unwrap().is_empty(),
                "work of {id} left"
            );
        }
    });
}

/// Queue capacity: 50 simulated workers (no video: claim, one progress report, finish) on
/// PostgreSQL drain 1000 tasks, each task run exactly once. Prints claims per second, the
/// figure docs/benchmarks.md records (a measurement, so nothing here asserts a speed).
#[test]
fn fifty_workers_drain_the_postgres_queue_each_task_once() {
    use std::sync::Arc;
    use vsr_service::storage::Key;
    use vsr_service::store::*;
    const TASKS: usize = 1000;
    const WORKERS: usize = 50;
    let database = common::new_database("queue");
    runtime().block_on(async {
        let store: Arc<dyn TaskStore> = Arc::new(PostgresStore::open(&database).await.unwrap());
        for n in 0..TASKS {
            let id = TaskId::new();
            let task = Task {
                id: id.clone(),
                owner: None,
                status: Status::Queued,
                stage: Stage::Queued,
                settings: Default::default(),
                models: vec![],
                notes: vec![],
                input_name: "in.mp4".into(),
                input_key: Key::new(&id, "mp4"),
                output_key: Key::new(&id, "mp4"),
                input: Default::default(),
                output_size: (2, 2),
                current_frame: 0,
                total_frames: 1,
                resumed_frames: 0,
                upscaled_frames: 0,
                fps: 0.0,
                eta_seconds: 0.0,
                error: None,
                created_at: n as i64,
                started_at: None,
                finished_at: None,
                expires_at: None,
                output_bytes: None,
            };
            store.insert(&task, None).await.unwrap();
        }
        // Each its own connection pool, as worker processes on their machines have.
        let mut pools = Vec::new();
        for _ in 0..WORKERS {
            pools.push(PostgresStore::open(&database).await.unwrap());
        }
        let started = Instant::now();
        let simulated = pools.into_iter().map(|store| {
            tokio::spawn(async move {
                let me = WorkerId::random();
                let mut ran = Vec::new();
                while let Some(task) = store.claim_next(me, now_ms() + 30_000).await.unwrap() {
                    let report = Report {
                        stage: Stage::Upscaling,
                        current_frame: 1,
                        total_frames: 1,
                        fps: 1.0,
                        eta_seconds: 0.0,
                        resumed_frames: 0,
                        upscaled_frames: 1,
                    };
                    assert!(!store.progress(&task.id, me, now_ms() + 30_000, &report).await.unwrap());
                    let outcome = Outcome {
                        status: Status::Completed,
                        error: None,
                        expires_at: now_ms() + 60_000,
                        output_bytes: Some(1),
                        notes: None,
                    };
                    assert!(store.finish(&task.id, me, &outcome).await.unwrap());
                    ran.push(task.id);
                }
                ran
            })
        });
        let mut ran = Vec::new();
        for w in simulated.collect::<Vec<_>>() {
            ran.extend(w.await.unwrap());
        }
        let seconds = started.elapsed().as_secs_f64();
        let distinct: std::collections::HashSet<_> = ran.iter().collect();
        assert_eq!((ran.len(), distinct.len()), (TASKS, TASKS), "a task ran twice or never");
        let counts = store.count_by_status().await.unwrap();
        assert!(counts.contains(&(Status::Completed, TASKS as i64)), "{counts:?}");
        println!(
            "queue capacity: {WORKERS} workers, {TASKS} tasks in {seconds:.2} s = {:.0} claim+progress+finish per second",
            TASKS as f64 / seconds
        );
    });
}

/// The object store down for a moment mid-task: the worker's requests are retried and the task
/// completes. Down for longer than the retries: an upload is refused with 503
/// `storage_unavailable` (nothing half-stored, no task made), and so is the download of a
/// result the API node has no copy of; back up, both work again.
#[test]
fn object_store_outages_are_retried_then_refused_with_a_code() {
    let dir = tempfile::tempdir().unwrap();
    let mut s3 = S3Server::start(dir.path());
    let mut shared = s3.env();
    shared.retain(|(k, _)| *k != "VSR_S3_RETRY_SECONDS");
    shared.extend([
        ("VSR_S3_RETRY_SECONDS", "8".into()),
        ("VSR_SEGMENT_SECONDS", "1".into()),
    ]);
    let database = common::new_database("outage_s3");
    shared.push(("VSR_DATABASE", database));
    let api_dir = dir.path().join("api");
    std::fs::create_dir_all(&api_dir).unwrap();
    let mut api_env: Vec<(&str, &str)> = shared.iter().map(|(k, v)| (*k, v.as_str())).collect();
    api_env.extend([("VSR_WORKERS", "0"), ("VSR_SWEEP_INTERVAL_SECONDS", "1")]);
    let api = Server::start(&api_dir, &api_env);
    let mut w = worker(&dir.path().join("worker"), &shared);
    let clip = dir.path().join("clip.mp4");
    common::keyframed_clip(&clip, "64x36", 10, 8);

    let (code, task) = api.upload(&clip, json!({"scale": 2, "quality": "fast"}));
    assert_eq!(code, 202, "{task}");
    let id = id(&task);
    api.wait_for(&id, 60, |s| s["currentFrame"].as_u64().unwrap_or(0) > 15);
    s3.stop();
    std::thread::sleep(Duration::from_secs(3));
    s3.restart();
    let done = api.wait_for(&id, 120, terminal);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["currentFrame"], 80, "{done}");

    s3.stop();
    let asked = Instant::now();
    let (code, refused) = api.upload(&clip, json!({"scale": 2}));
    assert_eq!(
        (code, refused["code"].as_str()),
        (503, Some("storage_unavailable")),
        "{refused}"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(40),
        "{:?}",
        asked.elapsed()
    );
    let link = done["downloadUrl"].as_str().unwrap();
    let r = api.client.get(api.url(link)).send().unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let (_, list) = api.get("/api/tasks");
    assert_eq!(list["total"], 1, "{list}");
    s3.restart();
    let out = dir.path().join("out.mp4");
    api.download(&done, &out);
    assert_eq!(framemd5(&out).len(), 80);
    let _ = w.kill();
    let _ = w.wait();

    // Objects no task refers to are swept once old (s3s-fs dates them by their file); fresh
    // ones, and the task's own, stay.
    use vsr_service::storage::{Key, Object, Storage};
    let storage = s3.storage();
    let (old, fresh) = (
        Object::Upload(Key::new(&vsr_service::store::TaskId::new(), "mp4")),
        Object::Work {
            result: Key::new(&vsr_service::store::TaskId::new(), "mp4"),
            dir: ".x.vsr-0".into(),
            file: "seg-000000.mp4".into(),
        },
    );
    runtime().block_on(async {
        storage.put(&old, &clip).await.unwrap();
        storage.put(&fresh, &clip).await.unwrap();
    });
    let old_file = dir
        .path()
        .join("s3")
        .join(BUCKET)
        .join("vsr")
        .join(old.name());
    let touched = Command::new("touch")
        .args(["-d", "2 hours ago"])
        .arg(&old_file)
        .status()
        .unwrap();
    assert!(touched.success(), "{}", old_file.display());
    let swept = Instant::now();
    let back = dir.path().join("back.bin");
    while runtime().block_on(storage.get(&old, &back)).unwrap() {
        assert!(
            swept.elapsed() < Duration::from_secs(20),
            "the orphan was not swept"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    runtime().block_on(async {
        assert!(storage.get(&fresh, &back).await.unwrap());
        let result = Object::Result(Key::parse(&format!("{id}.mp4")).unwrap());
        assert!(storage.get(&result, &back).await.unwrap());
    });
}

/// One long video over two machines that share no folder: the worker that did not get the
/// task takes segments the task's worker has not reached (claims in PostgreSQL, segments
/// through the object store), and the result is frame for frame one machine's.
#[test]
fn one_long_task_spreads_over_workers_sharing_no_folder() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("long.mp4");
    common::keyframed_clip(&clip, "64x36", 10, 30);
    let settings = json!({"scale": 2, "quality": "fast"});
    let reference_dir = dir.path().join("one-machine");
    std::fs::create_dir_all(&reference_dir).unwrap();
    let reference = single_machine(&reference_dir, &[(clip.clone(), settings.clone())], "3");

    let s3 = S3Server::start(dir.path());
    let mut shared = s3.env();
    shared.extend([
        ("VSR_DATABASE", common::new_database("spread")),
        ("VSR_LEASE_SECONDS", "3".into()),
        ("VSR_SEGMENT_SECONDS", "3".into()),
    ]);
    let api_dir = dir.path().join("api");
    std::fs::create_dir_all(&api_dir).unwrap();
    let mut api_env: Vec<(&str, &str)> = shared.iter().map(|(k, v)| (*k, v.as_str())).collect();
    api_env.push(("VSR_WORKERS", "0"));
    let api = Server::start(&api_dir, &api_env);
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    let mut a = worker(&a_dir, &shared);
    let (code, task) = api.upload(&clip, settings);
    assert_eq!(code, 202, "{task}");
    let id = id(&task);
    api.wait_for(&id, 60, |s| s["currentFrame"].as_u64().unwrap_or(0) > 0);
    let mut b = worker(&b_dir, &shared);
    let done = api.wait_for(&id, 300, terminal);
    for w in [&mut a, &mut b] {
        let _ = w.kill();
        let _ = w.wait();
    }
    let log = std::fs::read_to_string(b_dir.join("worker.log")).unwrap();
    assert_eq!(done["status"], "completed", "{done}\n{log}");
    let helped = common::frames_helped(&log);
    assert!(
        helped >= 30,
        "the second worker upscaled {helped} frames\n{log}"
    );
    let out = dir.path().join("out.mp4");
    api.download(&done, &out);
    assert!(
        framemd5(&out) == reference[0],
        "the shared result differs from one machine's"
    );
    println!("the second machine upscaled {helped} of 300 frames");
}
