#!/usr/bin/env python3
"""Runs a command and reports the peak resident memory of its whole process tree (the command
and every child, such as FFmpeg), sampled every 100 ms from /proc.

    tools/peak_rss.py -- vsr upscale in.mp4 -o out.mp4

The last line is `peak_tree_rss_mib=<float>`, also the peak of the command alone.
"""
import os
import subprocess
import sys
import time


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid):
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def tree(pid):
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += children(p)
    return pids


def main():
    argv = sys.argv[1:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        sys.exit(__doc__)
    proc = subprocess.Popen(argv)
    peak_tree = peak_main = 0
    while proc.poll() is None:
        peak_tree = max(peak_tree, sum(rss_kib(p) for p in tree(proc.pid)))
        peak_main = max(peak_main, rss_kib(proc.pid))
        time.sleep(0.1)
    print(f"peak_main_rss_mib={peak_main / 1024:.1f}")
    print(f"peak_tree_rss_mib={peak_tree / 1024:.1f}")
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
