#!/usr/bin/env python3
"""queue_digest.py DIR: one line per queue file and log under a Postfix queue
directory or a mailtwin mirror: "QUEUE ID MODE MTIME SHA256[:16]", sorted (MTIME is "-" for logs and
active/ files, whose mtimes are not replicated).

Hash subdirectories are flattened (deferred/6/ID -> deferred ID), so a queue
and its mirror compare equal line for line. Queue files without the owner-
execute bit (still being written by cleanup or postdrop) are skipped. Files
that vanish while being read are skipped too: the caller compares again.
"""
import hashlib
import os
import sys

QUEUES = ("maildrop", "incoming", "active", "deferred", "hold", "corrupt")
LOGS = ("defer", "bounce", "trace")


def main(root):
    out = []
    for top in QUEUES + LOGS:
        for dirpath, _dirs, files in os.walk(os.path.join(root, top)):
            for name in files:
                path = os.path.join(dirpath, name)
                try:
                    st = os.stat(path, follow_symlinks=False)
                    if top in QUEUES and not st.st_mode & 0o100:
                        continue
                    with open(path, "rb") as f:
                        digest = hashlib.sha256(f.read()).hexdigest()[:16]
                except FileNotFoundError:
                    continue
                # Not replicated, as Postfix never reads them: a log's mtime,
                # and the mtime of a file in active/ (qmgr sets it again when
                # the file leaves active/).
                mtime = "-" if top in LOGS or top == "active" else str(int(st.st_mtime))
                out.append(f"{top} {name} {st.st_mode & 0o7777:o} {mtime} {digest}")
    out.sort()
    sys.stdout.write("".join(line + "\n" for line in out))


if __name__ == "__main__":
    main(sys.argv[1])
