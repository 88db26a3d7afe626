#!/usr/bin/env python3
"""sender.py: a mail client that keeps sending, for the demo and lab stories.

Sends messages at --rate over SMTP to the first server in --servers that
answers (like a client following MX records: when one refuses or is down it
tries the next), one message per transaction, until --stop-file exists or
--count messages were accepted. Each recipient is drawn in turn from --rcpt.
For every message a server accepted with 250 it appends to --log:

    accepted <Message-ID> <recipient> <server> [<time>]

so that a test can check, at the destination, that every accepted message
was delivered exactly once. With --queue-ids a 6th field is the queue ID
from the server's "250 ... queued as ID" ("-" if it gave none); the time is
then taken the moment the 250 arrives, before QUIT. Failures are counted,
not fatal.
"""
import argparse
import os
import re
import smtplib
import sys
import time
import uuid


def send(s, rcpt, msg):
    """One transaction; the queue ID of its 250 ("-" if none). Raises if refused."""
    s.ehlo_or_helo_if_needed()
    code, resp = s.mail("sender@client.lab.test")
    if code != 250:
        raise smtplib.SMTPSenderRefused(code, resp, "sender@client.lab.test")
    code, resp = s.rcpt(rcpt)
    if code not in (250, 251):
        raise smtplib.SMTPRecipientsRefused({rcpt: (code, resp)})
    code, resp = s.data(msg.encode())
    if code != 250:
        raise smtplib.SMTPDataError(code, resp)
    m = re.search(rb"queued as ([0-9A-Za-z]+)", resp)
    return m.group(1).decode() if m else "-"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--servers", required=True, help="comma-separated host[:port] ([IPv6][:port]) list, in MX order")
    ap.add_argument("--rcpt", required=True, help="comma-separated recipients, used in turn")
    ap.add_argument("--rate", type=float, default=50)
    ap.add_argument("--count", type=int, default=0, help="stop after this many accepted (0: no limit)")
    ap.add_argument("--stop-file", default="")
    ap.add_argument("--log", required=True)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--max-seconds", type=float, default=600, help="hard stop")
    ap.add_argument("--times", action="store_true",
                    help="add the time of each 250 (seconds since the epoch) as a 5th field")
    ap.add_argument("--queue-ids", action="store_true",
                    help="add the queue ID of each 250 as a 6th field (implies --times)")
    args = ap.parse_args()
    args.times = args.times or args.queue_ids

    servers = []
    for s in args.servers.split(","):
        if s.startswith("["):  # [IPv6]:port or [IPv6]
            host, _, rest = s[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else ""
        else:
            host, _, port = s.partition(":")
        servers.append((host, int(port or 25)))
    rcpts = args.rcpt.split(",")
    body = ("x" * 70 + "\r\n") * max(1, args.size // 72)
    accepted = failed = 0
    start = time.monotonic()
    i = 0
    with open(args.log, "a", buffering=1) as log:
        while time.monotonic() - start < args.max_seconds:
            if args.stop_file and os.path.exists(args.stop_file):
                break
            if args.count and accepted >= args.count:
                break
            due = start + i / args.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            i += 1
            rcpt = rcpts[i % len(rcpts)]
            msgid = f"<{uuid.uuid4().hex}@sender.lab.test>"
            msg = (f"From: sender@client.lab.test\r\nTo: {rcpt}\r\nSubject: demo {i}\r\n"
                   f"Message-ID: {msgid}\r\n\r\n{body}")
            for host, port in servers:
                try:
                    with smtplib.SMTP(host, port, timeout=5) as s:
                        qid = send(s, rcpt, msg)
                        t = time.time()  # the 250 is here (QUIT comes after)
                    log.write(f"accepted {msgid} {rcpt} {host}"
                              + (f" {t:.3f}" if args.times else "")
                              + (f" {qid}" if args.queue_ids else "") + "\n")
                    accepted += 1
                    break
                except (OSError, smtplib.SMTPException):
                    continue
            else:
                failed += 1
    print(f"sender: accepted={accepted} failed={failed}", file=sys.stderr)


if __name__ == "__main__":
    main()
