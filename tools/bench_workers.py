#!/usr/bin/env python3
"""Wall time of work on `vsr serve` with one worker and with several, each worker on one
inference thread: how well segments share one video between workers (`--tasks 1`, the
default), or how a set of tasks spreads over them (`--tasks N`).

    tools/bench_workers.py --vsr target/release/vsr --workers 1 2 [--tasks N --seconds S]
                           [--core-each]

Generates a clip (testsrc2, 10 fps, a keyframe every second; 60 s by default), sends it
`--tasks` times to a fresh server per worker count (5 s segments), and prints
`workers=N seconds=S` for each (the first task's startedAt -> the last one's finishedAt),
then `ratio=` (the last count's time over the first's).

With `--core-each`, worker i and everything it starts (FFmpeg, ffprobe) are confined to CPU i
(`taskset`), as on machines of one core each. Without it, one worker on a machine of two cores
runs its FFmpeg work on the core its model leaves idle, which two workers cannot: the ratio
then measures that spare core as much as the queue.
"""
import argparse
import datetime
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def upload(port, clip, settings):
    boundary = uuid.uuid4().hex
    with open(clip, "rb") as f:
        video = f.read()
    body = b"".join([
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"settings\"\r\n\r\n".encode(),
        json.dumps(settings).encode(),
        f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"video\"; filename=\"clip.mp4\"\r\n"
        "Content-Type: video/mp4\r\n\r\n".encode(),
        video,
        f"\r\n--{boundary}--\r\n".encode(),
    ])
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/upload", data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)["taskId"]


def status(port, task):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status/{task}") as r:
        return json.load(r)


def seconds(iso_from, iso_to):
    parse = lambda s: datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
    return (parse(iso_to) - parse(iso_from)).total_seconds()


def worker_pids(server, workers):
    """The server's worker processes, once all have started."""
    for _ in range(200):
        out = subprocess.run(["ps", "--ppid", str(server.pid), "-o", "pid=,args="],
                             capture_output=True, text=True, check=True).stdout
        pids = [int(line.split()[0]) for line in out.splitlines() if " worker" in line]
        if len(pids) == workers:
            return pids
        time.sleep(0.1)
    raise RuntimeError(f"{workers} workers did not start")


def run(vsr, clip, workers, settings, tasks, core_each):
    port = free_port()
    data = tempfile.mkdtemp()
    env = dict(os.environ, VSR_THREADS="1", VSR_SEGMENT_SECONDS="5",
               UPLOAD_FOLDER=f"{data}/uploads", PROCESSED_FOLDER=f"{data}/processed",
               VSR_DATABASE=f"{data}/vsr.db")
    server = subprocess.Popen([vsr, "serve", "--port", str(port), "--workers", str(workers)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz")
                break
            except OSError:
                time.sleep(0.1)
        if core_each:
            for cpu, pid in enumerate(worker_pids(server, workers)):
                subprocess.run(["taskset", "-a", "-p", "-c", str(cpu), str(pid)],
                               stdout=subprocess.DEVNULL, check=True)
        ids = [upload(port, clip, settings) for _ in range(tasks)]
        ended = []
        for task in ids:
            while True:
                s = status(port, task)
                if s["status"] in ("completed", "failed", "cancelled"):
                    break
                time.sleep(0.2)
            assert s["status"] == "completed", s
            ended.append(s)
        first = min(ended, key=lambda s: s["startedAt"])["startedAt"]
        last = max(ended, key=lambda s: s["finishedAt"])["finishedAt"]
        return seconds(first, last)
    finally:
        server.terminate()
        server.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vsr", default="target/release/vsr")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--size", default="128x72")
    ap.add_argument("--tasks", type=int, default=1)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--core-each", action="store_true",
                    help="confine worker i and its children to CPU i")
    args = ap.parse_args()
    clip = os.path.join(tempfile.mkdtemp(), "long.mp4")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=size={args.size}:rate=10:duration={args.seconds}", "-c:v", "libx264",
                    "-g", "10", clip], check=True)
    settings = {"scale": 2, "quality": "fast"}
    times = []
    for n in args.workers:
        t = run(args.vsr, clip, n, settings, args.tasks, args.core_each)
        times.append(t)
        print(f"workers={n} seconds={t:.1f}", flush=True)
    print(f"ratio={times[-1] / times[0]:.3f}")


if __name__ == "__main__":
    main()
