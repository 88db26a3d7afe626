#!/usr/bin/env python3
"""fsync_floor.py: what one durable write costs on this disk, as a floor for
the replication lag.

At RATE writes per second (paced on a fixed schedule, like paced_send.py), it
does what any replica must do at the least to hold one new 4 KB message
durably: create tmp/N, write 4 KB, fsync it, rename it to q/N, fsync q/.
Files older than the last 400 are unlinked, like a queue that drains.  It
runs in the same filesystem as the standby's mirror, while Postfix takes the
same paced load, so it shares the disk as the standby does.  No network, no
TLS, no queue watcher: a replication's lag cannot be below this.

Two latencies per write:
  p50_ms .. max_ms         from the start of the write to its end: what the
                           disk itself takes, a floor for any replica;
  serial_p50_ms ..         from the moment the write was due (its slot in the
                           paced schedule) to its end: a write that had to
                           wait for a slow one before it counts that wait too.
                           This is the floor for a replica that makes one
                           change durable after another, as the standby does
                           (without it, one slow fsync would hide the writes
                           queued behind it).

Prints one line:
  floor: n=.. p50_ms=.. p90_ms=.. p99_ms=.. max_ms=.. serial_p50_ms=.. serial_p99_ms=.. serial_max_ms=..
"""

import argparse
import os
import shutil
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", required=True, help="a new directory, removed at the end")
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--size", type=int, default=4096)
    a = ap.parse_args()

    os.makedirs(a.dir + "/tmp")
    os.makedirs(a.dir + "/q")
    qfd = os.open(a.dir + "/q", os.O_RDONLY | os.O_DIRECTORY)
    data = os.urandom(a.size)
    lat = []
    serial = []
    t0 = time.monotonic()
    due = t0
    n = 0
    try:
        while due - t0 < a.seconds:
            now = time.monotonic()
            if now < due:
                time.sleep(due - now)
            slot = due
            due += 1.0 / a.rate
            start = time.monotonic()
            tmp = f"{a.dir}/tmp/{n}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, f"{a.dir}/q/{n}")
            os.fsync(qfd)
            end = time.monotonic()
            lat.append((end - start) * 1000.0)
            serial.append((end - slot) * 1000.0)
            if n >= 400:
                os.unlink(f"{a.dir}/q/{n - 400}")
            n += 1
    finally:
        os.close(qfd)
        shutil.rmtree(a.dir, ignore_errors=True)
    lat.sort()
    serial.sort()

    def q(v, f):
        return v[min(len(v) - 1, int(f * len(v)))] if v else float("nan")

    print(f"floor: n={len(lat)} p50_ms={q(lat, 0.50):.2f} p90_ms={q(lat, 0.90):.2f} "
          f"p99_ms={q(lat, 0.99):.2f} max_ms={q(lat, 1.0):.2f} "
          f"serial_p50_ms={q(serial, 0.50):.2f} serial_p99_ms={q(serial, 0.99):.2f} "
          f"serial_max_ms={q(serial, 1.0):.2f}")


if __name__ == "__main__":
    main()
