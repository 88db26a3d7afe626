#!/usr/bin/env python3
"""rsync_loop.py: the paper's replication method, as a baseline to measure.

Watches a Postfix queue with `inotifywait -m -r` and, after each queue
transition, runs `rsync -a --delete` of the queue directories to a mirror
directory.  Events that arrive while an rsync runs are coalesced into the
next run (the best that "sync at each transition" can do).  Read-only events
(OPEN, ACCESS, CLOSE_NOWRITE) are not watched: rsync's own reads would
trigger it forever.

Before it reports ready it runs one rsync (untimed, not counted) so the
mirror holds the queue as it is; from then on every run is measured until
SIGTERM/SIGINT, when it finishes the current run and writes a JSON summary:

  runs, events, commits        rsync runs; events seen; commit events
                               (ATTRIB = chmod 0700 of incoming/QUEUEID)
  rsync_cpu_s                  user+sys CPU of every rsync process (sender,
                               receiver, generator), from wait4 rusage
  run_ms_p50/_max, rsync_wall_s  duration of the runs
  busy                         rsync_wall_s / (first event -> end of the last
                               run): near 1 means rsync ran back to back
  lag_ms_p50/_p99/_mean        per commit event: from the moment the event was
                               read (a reader thread stamps it on arrival) to
                               the end of the first rsync that started after it
  loop_cpu_s, inotify_cpu_s    the watcher's own overhead (this script,
                               inotifywait), not counted as rsync CPU
  bad_exits                    rsync exits other than 0 and 24 (files vanished)
"""

import argparse
import json
import os
import queue
import re
import resource
import signal
import subprocess
import sys
import threading
import time

QUEUE_DIRS = ["incoming", "active", "deferred", "hold", "maildrop", "defer", "bounce", "trace"]
EVENTS = "create,modify,attrib,close_write,moved_to,moved_from,delete"
TEMP_NAME = re.compile(r"^\d+\.\d+$")  # cleanup's temporary name (usec.pid)


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def quantile(values, q):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(q * (len(v) - 1) + 0.5))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spool", required=True, help="Postfix queue_directory")
    ap.add_argument("--dest", required=True, help="mirror directory")
    ap.add_argument("--summary", required=True, help="JSON summary written at exit")
    ap.add_argument("--ready", required=True, help="file created once watching")
    args = ap.parse_args()

    os.makedirs(args.dest, exist_ok=True)
    os.chdir(args.spool)
    dirs = [d for d in QUEUE_DIRS if os.path.isdir(d)]
    rsync = ["rsync", "-a", "--delete", *dirs, args.dest.rstrip("/") + "/"]

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    watch = subprocess.Popen(
        ["inotifywait", "-m", "-r", "-e", EVENTS, "--format", "%w%f %e", *dirs],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    established = threading.Event()

    def read_stderr():
        for line in watch.stderr:
            if "Watches established" in line:
                established.set()
            elif "Setting up watches" not in line:
                print(f"rsync_loop: inotifywait: {line.rstrip()}", file=sys.stderr)

    events = queue.Queue()

    def read_events():
        for line in watch.stdout:
            events.put((time.time(), line.rstrip("\n")))
        events.put(None)

    threading.Thread(target=read_stderr, daemon=True).start()
    threading.Thread(target=read_events, daemon=True).start()
    if not established.wait(60):
        print("rsync_loop: inotifywait did not start", file=sys.stderr)
        watch.kill()
        return 1

    subprocess.run(rsync, check=False)  # bring the mirror up to date, untimed
    while not events.empty():  # events of the queue before we were ready
        events.get_nowait()
    open(args.ready, "w").close()

    runs = n_events = n_commits = bad = 0
    cpu = wall = 0.0
    run_ms, lag_ms = [], []
    first_event = last_end = None
    ended = False
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    while not ended:
        try:
            item = events.get(timeout=0.2)
        except queue.Empty:
            if stop.is_set():
                break
            continue
        batch = [item]
        while True:  # coalesce what is already there
            try:
                batch.append(events.get_nowait())
            except queue.Empty:
                break
        commits = []
        for it in batch:
            if it is None:
                ended = True
                continue
            n_events += 1
            if first_event is None:
                first_event = it[0]
            path, ev = it[1].rsplit(" ", 1)
            if path.startswith("incoming/") and "ATTRIB" in ev.split(",") and \
                    not TEMP_NAME.match(os.path.basename(path)):
                commits.append(it[0])
        if len(batch) == 1 and ended:
            break
        c0, t0 = children_cpu(), time.time()
        rc = subprocess.run(rsync, check=False).returncode
        t1 = time.time()
        cpu += children_cpu() - c0
        wall += t1 - t0
        last_end = t1
        runs += 1
        run_ms.append((t1 - t0) * 1000)
        if rc not in (0, 24):
            bad += 1
        n_commits += len(commits)
        lag_ms.extend((t1 - tc) * 1000 for tc in commits)

    self1 = resource.getrusage(resource.RUSAGE_SELF)
    before = children_cpu()
    watch.terminate()
    watch.wait()
    inotify_cpu = children_cpu() - before
    summary = {
        "runs": runs,
        "events": n_events,
        "commits": n_commits,
        "rsync_cpu_s": round(cpu, 6),
        "rsync_wall_s": round(wall, 6),
        "run_ms_p50": quantile(run_ms, 0.5),
        "run_ms_max": max(run_ms) if run_ms else None,
        "busy": round(wall / (last_end - first_event), 3) if runs and last_end > first_event else None,
        "lag_ms_p50": quantile(lag_ms, 0.5),
        "lag_ms_p99": quantile(lag_ms, 0.99),
        "lag_ms_mean": sum(lag_ms) / len(lag_ms) if lag_ms else None,
        "loop_cpu_s": round(self1.ru_utime + self1.ru_stime - self0.ru_utime - self0.ru_stime, 6),
        "inotify_cpu_s": round(inotify_cpu, 6),
        "bad_exits": bad,
    }
    with open(args.summary + ".tmp", "w") as f:
        json.dump(summary, f)
    os.rename(args.summary + ".tmp", args.summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
