#!/usr/bin/env python3
"""dup_times.py SINK_DIR T0 ID...: for each Message-ID (without <>), the
times its copies reached the sink (each file's mtime: smtp-sink writes it as
the message arrives), in seconds relative to T0 (wall clock, seconds since
the epoch), one line per ID: "ID +0.012 +4.380". Tells a delivery that was
under way at T0 (one copy right at T0) from two servers delivering the same
message (copies spread over the time both served)."""
import os
import re
import sys

sink, t0, ids = sys.argv[1], float(sys.argv[2]), set(sys.argv[3:])
times = {i: [] for i in ids}
for name in os.listdir(sink):
    if name.startswith("."):
        continue
    path = os.path.join(sink, name)
    try:
        with open(path, "rb") as f:
            head = f.read(65536).split(b"\n\n", 1)[0].decode("latin-1")
    except OSError:
        continue
    m = re.search(r"^Message-ID:[ \t]*<?([^>\s]*)>?", head, re.M | re.I)
    if m and m.group(1) in times:
        times[m.group(1)].append(os.stat(path).st_mtime - t0)
for i in sorted(ids):
    print(i, " ".join(f"{t:+.3f}" for t in sorted(times[i])))
