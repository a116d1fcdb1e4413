//! Resumable tasks in `vsr serve`: a server killed again and again, workers that die, and two
//! workers on one long video all end with the frames an uninterrupted run makes, redoing at
//! most the segment each interruption was in.

mod common;

use std::path::Path;

use common::framemd5;
use common::server::{children_of, id, terminal, wait_until_gone, Server};
use serde_json::{json, Value};

/// A 60 s clip, 10 fps, 64x36, a keyframe every second: 600 frames, 50 per 5 s segment.
fn long_clip(path: &Path) {
    common::keyframed_clip(path, "64x36", 10, 60);
}

const FRAMES: u64 = 600;
const SEGMENT_FRAMES: u64 = 50;

/// Lossless output, so that decoded frames compare exactly.
fn settings() -> Value {
    json!({"scale": 2, "quality": "fast", "crf": 0})
}

/// Runs `clip` to completion on a fresh server with `env`; the result's frames.
fn uninterrupted(dir: &Path, clip: &Path, env: &[(&str, &str)]) -> Vec<String> {
    let server = Server::start(dir, env);
    let (_, task) = server.upload(clip, settings());
    let done = server.wait_for(&id(&task), 300, terminal);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["resumedFrames"], 0);
    let out = dir.join("result.mp4");
    server.download(&done, &out);
    framemd5(&out)
}

/// Nothing but results left in the processed folder: no temporaries, no work directories.
fn only_results(server: &Server) {
    let left: Vec<_> = server
        .files_in("processed")
        .into_iter()
        .filter(|f| f.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// The server SIGKILLed at ten random moments of a 60 s task: each restart resumes after the
/// finished segments, the task completes, at most one segment's frames are redone per kill,
/// and the frames are those of an uninterrupted run and of an unsegmented one.
#[test]
fn server_killed_ten_times_redoes_at_most_a_segment_each() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("long.mp4");
    long_clip(&clip);
    let segments = [("VSR_SEGMENT_SECONDS", "5")];
    let whole = tempfile::tempdir().unwrap();
    let reference = uninterrupted(whole.path(), &clip, &[("VSR_SEGMENT_SECONDS", "0")]);
    assert_eq!(reference.len() as u64, FRAMES);
    let straight = tempfile::tempdir().unwrap();
    assert_eq!(uninterrupted(straight.path(), &clip, &segments), reference);

    let mut server = Server::start(dir.path(), &segments);
    let (_, task) = server.upload(&clip, settings());
    let id = id(&task);
    // Ten kill points, spread at random (a fixed seed: a failure can be replayed) over all
    // but the last two segments: from a point in the last frames the task can end between
    // two progress reports, and there would be nothing left to kill.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut points: Vec<u64> = (0..10)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % (FRAMES - 2 * SEGMENT_FRAMES)
        })
        .collect();
    points.sort();
    for point in points {
        let reached = server.wait_for(&id, 120, |s| {
            (s["status"] == "processing" && s["currentFrame"].as_u64().unwrap_or(0) >= point)
                || terminal(s)
        });
        assert_eq!(
            reached["status"], "processing",
            "before frame {point}: {reached}"
        );
        let workers = children_of(server.child.as_ref().unwrap().id());
        server.signal("-KILL");
        // The dead server's workers put the task back in the queue as they stop (their
        // parent's death signals them). Until then the task shows that run's progress, so a
        // server started sooner would be watched on frames it is not making.
        wait_until_gone(&workers, 60);
        server.spawn();
    }
    let done = server.wait_for(&id, 300, terminal);
    assert_eq!(done["status"], "completed", "{done}");
    let upscaled = done["upscaledFrames"].as_u64().unwrap();
    assert!(
        upscaled <= FRAMES + 10 * SEGMENT_FRAMES,
        "{upscaled} frames upscaled for {FRAMES}"
    );
    let out = dir.path().join("result.mp4");
    server.download(&done, &out);
    assert_eq!(framemd5(&out), reference);
    only_results(&server);
}

/// The worker a task runs on waits for `stage` on a worker not killed yet; its pid.
fn running_worker(server: &Server, id: &str, killed: &[u32]) -> u32 {
    let server_pid = server.child.as_ref().unwrap().id();
    let worker = std::cell::Cell::new(0);
    server.wait_for(id, 60, |s| {
        if terminal(s) {
            return true;
        }
        if s["stage"] != "upscaling" {
            return false;
        }
        worker.set(
            children_of(server_pid)
                .into_iter()
                .find(|p| !killed.contains(p))
                .unwrap_or(0),
        );
        worker.get() != 0
    });
    assert_ne!(worker.get(), 0, "the task is not running");
    worker.get()
}

fn kill(pid: u32) {
    common::signal(pid, "-KILL");
}

/// A worker that dies costs its task a retry from the finished segments, not the task; the
/// server stays up. Workers dying again and again with no segment finished in between (a
/// file that crashes the decoder, say) fail it with `worker_crashed`. A cancel removes the
/// kept segments.
#[test]
fn dying_workers_cost_a_retry_then_fail_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("long.mp4");
    long_clip(&clip);
    let server = Server::start(dir.path(), &[("VSR_SEGMENT_SECONDS", "5")]);

    let (_, task) = server.upload(&clip, settings());
    let first = id(&task);
    let worker = running_worker(&server, &first, &[]);
    // Half way through the third segment: the first two are recorded (the encoder trails
    // the model by a few frames).
    server.wait_for(&first, 60, |s| {
        s["currentFrame"].as_u64().unwrap_or(0) > 2 * SEGMENT_FRAMES + SEGMENT_FRAMES / 2
    });
    kill(worker);
    let done = server.wait_for(&first, 120, terminal);
    assert_eq!(done["status"], "completed", "{done}");
    assert!(
        done["resumedFrames"].as_u64().unwrap() >= 2 * SEGMENT_FRAMES,
        "{done}"
    );
    only_results(&server);

    let (_, task) = server.upload(&clip, settings());
    let doomed = id(&task);
    let mut killed = Vec::new();
    for _ in 0..3 {
        let worker = running_worker(&server, &doomed, &killed);
        kill(worker);
        killed.push(worker);
    }
    let failed = server.wait_for(&doomed, 30, terminal);
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], "worker_crashed");
    assert_eq!(server.get("/healthz").0, 200);

    // Cancelled after a segment finished: its work goes with it.
    let (_, task) = server.upload(&clip, settings());
    let cancelled = id(&task);
    server.wait_for(&cancelled, 60, |s| {
        s["currentFrame"].as_u64().unwrap_or(0) > SEGMENT_FRAMES + 5
    });
    let (code, _) = server.post(&format!("/api/cancel/{cancelled}"));
    assert_eq!(code, 200);
    server.wait_for(&cancelled, 30, terminal);
    only_results(&server);
}

/// Two workers, one 60 s task: the idle worker takes segments the task's worker has not
/// reached, and the result is whole.
#[test]
fn two_workers_share_one_long_task() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("long.mp4");
    long_clip(&clip);
    let server = Server::start(
        dir.path(),
        &[
            ("VSR_SEGMENT_SECONDS", "5"),
            ("VSR_WORKERS", "2"),
            ("VSR_THREADS", "1"),
        ],
    );
    let (_, task) = server.upload(&clip, settings());
    let done = server.wait_for(&id(&task), 300, terminal);
    assert_eq!(done["status"], "completed", "{done}");
    let out = dir.path().join("result.mp4");
    server.download(&done, &out);
    assert_eq!(framemd5(&out).len() as u64, FRAMES);
    let log =
        std::fs::read_to_string(dir.path().join(format!("server-{}.log", server.port))).unwrap();
    let helped = common::frames_helped(&log);
    assert!(
        helped >= SEGMENT_FRAMES,
        "the second worker upscaled {helped} frames: {log}"
    );
    only_results(&server);
}
