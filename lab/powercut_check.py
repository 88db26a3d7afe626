#!/usr/bin/env python3
"""powercut_check.py: did every message a client got 250 for survive?

Reads the log of lab/sender.py --queue-ids ("accepted <Message-ID> <rcpt>
<server> <time> <queue-ID>"). A message is owed when its 250 arrived before
--before (seconds since the epoch: the instant the standby was killed), so
the standby acknowledged it before it died (sync mode: the gate releases a
250 only then), and, with --after, after that time (the test emptied the
queue on purpose then, to keep each check short).

  --mirror DIR  after a power cut of the standby: each owed message must be
                in the standby's mirror as a committed queue file (mode with
                the owner-execute bit, not empty, holding its Message-ID),
                exactly once across the queue directories;
  --sink DIR    after promotion: each owed message must have been delivered
                (by Message-ID in the smtp-sink dumps) exactly once, or, with
                --queue DIR, still be queued there (then it is "queued"), or
                with --mirror too, still be in the promoted node's mirror,
                where no Postfix will ever deliver it (then it is "stranded";
                both count as lost here, as nothing delivers them).

With --unprotected, the messages the gate answered without a replica (sync
mode after sync_timeout: logged and counted in status as unprotected, never
promised) are not owed: they are counted as "unprotected".

Prints one line "owed=N lost=L duplicated=D queued=Q stranded=S unprotected=U" and then up to 10
lost or duplicated IDs; exit status 0 whatever the counts (the caller
judges).
"""

import argparse
import os
import re
import stat
import sys
from collections import Counter

QUEUES = ("incoming", "active", "deferred", "hold", "maildrop")


def owed(log, before, after=0.0):
    out = {}
    with open(log) as f:
        for line in f:
            p = line.split()
            if len(p) >= 6 and p[0] == "accepted" and after < float(p[4]) < before:
                out[p[1].strip("<>")] = p[5]
    return out


def queue_files(root):
    """queue ID -> list of paths, over every queue directory (hashed or flat)."""
    found = {}
    for q in QUEUES:
        for d, _dirs, files in os.walk(os.path.join(root, q)):
            for name in files:
                found.setdefault(name, []).append(os.path.join(d, name))
    return found


def committed_with(path, msgid):
    try:
        st = os.stat(path)
        if not st.st_mode & stat.S_IXUSR or st.st_size == 0:
            return False
        with open(path, "rb") as f:
            return msgid.encode() in f.read()
    except OSError:
        return False


def check_mirror(want, mirror):
    files = queue_files(mirror)
    lost, dup = [], []
    for msgid, qid in want.items():
        good = [p for p in files.get(qid, []) if committed_with(p, msgid)]
        if not good:
            lost.append(f"{msgid}({qid}: {files.get(qid, 'no file')})")
        elif len(good) > 1:
            dup.append(f"{msgid}({qid}: {good})")
    return lost, dup, 0


def delivered(sink_dirs):
    seen = Counter()
    pat = re.compile(rb"^Message-I[Dd]: <([^>]*)>", re.M)
    for d in sink_dirs:
        for name in os.listdir(d):
            try:
                with open(os.path.join(d, name), "rb") as f:
                    data = f.read()
            except OSError:
                continue
            if not data.endswith(b"\n\n"):  # smtp-sink: unfinished dump
                continue
            m = pat.search(data)
            if m:
                seen[m.group(1).decode()] += 1
    return seen


def holding(want, root):
    """The owed Message-IDs committed in the queue (or mirror) under root."""
    if not root:
        return set()
    files = queue_files(root)
    return {m for m, q in want.items() if any(committed_with(p, m) for p in files.get(q, []))}


def check_sink(want, sink_dirs, queue, mirror):
    seen = delivered(sink_dirs)
    in_queue, in_mirror = holding(want, queue), holding(want, mirror)
    lost, dup, queued, stranded = [], [], 0, 0
    for msgid in want:
        n = seen.get(msgid, 0)
        if n == 0 and msgid in in_queue:
            queued += 1
        elif n == 0:
            stranded += msgid in in_mirror
            lost.append(msgid + (" (stranded in the mirror)" if msgid in in_mirror else ""))
        elif n > 1:
            dup.append(f"{msgid}(x{n})")
    return lost, dup, queued, stranded


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--log", required=True)
    ap.add_argument("--before", type=float, required=True)
    ap.add_argument("--after", type=float, default=0.0,
                    help="only 250s after this time (the queue was emptied on purpose before)")
    ap.add_argument("--mirror")
    ap.add_argument("--sink", action="append")
    ap.add_argument("--queue")
    ap.add_argument("--unprotected", default="",
                    help="comma-separated queue IDs the gate answered 250 without a replica "
                         "(status gate.unprotected_ids at the kill): never promised, counted apart")
    args = ap.parse_args()
    want = owed(args.log, args.before, args.after)
    unprotected = set(filter(None, args.unprotected.split(",")))
    excluded = [m for m, qid in want.items() if qid in unprotected]
    for m in excluded:
        del want[m]
    stranded = 0
    if args.sink:
        lost, dup, queued, stranded = check_sink(want, args.sink, args.queue, args.mirror)
    elif args.mirror:
        lost, dup, queued = check_mirror(want, args.mirror)
    else:
        ap.error("give --mirror or --sink")
    print(f"owed={len(want)} lost={len(lost)} duplicated={len(dup)} queued={queued} stranded={stranded} "
          f"unprotected={len(excluded)}")
    for x in (lost + dup)[:10]:
        print(f"  {x}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
