#!/usr/bin/env python3
"""gate_trial.py: is a message on the standby the moment its sender gets 250?

Sends messages one at a time over SMTP. Right when the 250 that ends a
message arrives, it freezes the primary's mailtwind (SIGSTOP: from that
instant nothing more can be replicated), then looks for the queue ID in the
standby's mirror, then thaws mailtwind (SIGCONT). A message found there, or
already delivered (--sink, by Message-ID), is protected; any other is a
message a crash at that instant would have lost.

  gate_trial.py --server IP --trials N --freeze PID --mirror DIR [--sink DIR]

With --crash-after K and --crash-cmd CMD it instead sends until the K-th 250,
then freezes PID and runs CMD (which kills the primary), and stops: the
caller promotes the standby and checks --log against the destination.

With --not-on-hold (strict durability) a copy in the mirror's hold/ does not
count: the message must be on the standby in a queue it would deliver from.

Prints "trials=N protected=P missing=M" (and the missing IDs); --log FILE
gets one line per accepted message: "MESSAGE-ID QUEUE-ID".
"""

import argparse
import os
import random
import re
import signal
import smtplib
import socket
import subprocess
import sys
import time

QUEUES = ("incoming", "active", "deferred", "hold", "maildrop")
# A long queue ID (enable_long_queue_ids = yes, which mailtwin requires):
# base-52 time and inode digits with a 'z' between them, never empty.
QUEUE_ID = re.compile(r"[0-9A-Za-z]{10,}z[0-9A-Za-z]+")


def queue_id(reply):
    """The queue ID of a "250 ... queued as ID" reply, or "" if it has none."""
    m = re.search(r"queued as ([0-9A-Za-z]+)", reply)
    return m.group(1) if m and QUEUE_ID.fullmatch(m.group(1)) else ""


def in_mirror(mirror, qid, queues=QUEUES):
    # Without a queue ID there is nothing to look for: os.path.join(base, "")
    # is the queue directory itself, which exists, so an empty ID would
    # count as found.
    if not QUEUE_ID.fullmatch(qid or ""):
        return False
    for q in queues:
        base = os.path.join(mirror, q)
        if os.path.exists(os.path.join(base, qid)):
            return True
        try:
            subs = os.listdir(base)
        except FileNotFoundError:
            continue
        for sub in subs:  # hashed queues: deferred/6/ID (or deeper)
            for root, _dirs, files in os.walk(os.path.join(base, sub)):
                if qid in files:
                    return True
    return False


def delivered(sink, msgid):
    if not sink:
        return False
    needle = f"Message-ID: <{msgid}>".encode()
    for name in os.listdir(sink):
        try:
            with open(os.path.join(sink, name), "rb") as f:
                if needle in f.read(4096):
                    return True
        except OSError:
            pass
    return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", required=True)
    ap.add_argument("--port", type=int, default=25)
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--freeze", type=int, required=True, help="PID of the primary's mailtwind")
    ap.add_argument("--mirror", help="the standby's mirror directory")
    ap.add_argument("--sink", help="destination dump directory (delivered = protected)")
    ap.add_argument("--rcpt", default="later@dead.lab.test")
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--pause-ms", type=float, default=30, help="max random pause between trials")
    ap.add_argument("--crash-after", type=int, default=0)
    ap.add_argument("--crash-cmd")
    ap.add_argument("--log")
    ap.add_argument("--not-on-hold", action="store_true",
                    help="strict mode: a copy the standby keeps in hold/ does not count "
                         "(a promoted standby would not deliver it)")
    ap.add_argument("--tag", default=f"{os.getpid()}.{int(time.time())}")
    args = ap.parse_args()

    log = open(args.log, "a") if args.log else None
    body = ("x" * 70 + "\r\n") * max(1, args.size // 72)
    protected = missing = 0
    missing_ids = []
    smtp = smtplib.SMTP(args.server, args.port, timeout=60)
    smtp.ehlo("trial.lab.test")
    n = args.crash_after if args.crash_after else args.trials
    for i in range(n):
        msgid = f"trial.{args.tag}.{i}@client.lab.test"
        msg = (f"From: t@client.lab.test\r\nTo: {args.rcpt}\r\nMessage-ID: <{msgid}>\r\n"
               f"Subject: trial {i}\r\n\r\n{body}")
        code, resp = smtp.mail("t@client.lab.test")
        if code != 250:
            sys.exit(f"MAIL FROM refused: {code} {resp!r}")
        code, resp = smtp.rcpt(args.rcpt)
        if code not in (250, 251):
            sys.exit(f"RCPT TO refused: {code} {resp!r}")
        code, resp = smtp.data(msg.encode())
        crash_now = args.crash_after and i + 1 == args.crash_after
        if code == 250 and (args.mirror or crash_now):
            os.kill(args.freeze, signal.SIGSTOP)  # nothing replicates from here on
        text = resp.decode(errors="replace")
        qid = queue_id(text)
        if code == 250 and log:
            log.write(f"{msgid} {qid}\n")
            log.flush()
        if crash_now:
            subprocess.run(args.crash_cmd, shell=True, check=False)
            print(f"crashed after {i + 1} accepted messages; last {qid}")
            return 0
        if code != 250:
            sys.exit(f"message {i} refused: {code} {text}")
        if args.mirror:
            try:
                queues = [q for q in QUEUES if q != "hold"] if args.not_on_hold else QUEUES
                if in_mirror(args.mirror, qid, queues) or delivered(args.sink, msgid):
                    protected += 1
                else:
                    missing += 1  # (a 250 without a queue ID cannot be checked: missing)
                    missing_ids.append(qid or f"<no queue ID: {text.strip()}>")
            finally:
                os.kill(args.freeze, signal.SIGCONT)
        time.sleep(random.uniform(0, args.pause_ms / 1000.0))
    smtp.quit()
    print(f"trials={n} protected={protected} missing={missing}"
          + (" ids=" + ",".join(missing_ids[:20]) if missing_ids else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
