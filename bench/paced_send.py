#!/usr/bin/env python3
"""paced_send.py: send mail over SMTP at a constant rate, for a fixed time.

Message i is due at start + i/rate; a few threads, each with its own
persistent SMTP session, take the next due message and send it (sleeping
until it is due).  If every thread is busy the message goes out late: the
summary reports how late, so a sender that could not keep the pace is seen.

Each message is about --size bytes (headers + body), with a unique
Message-ID.  Prints one summary line:

  paced: sent=N failed=F rate_target=R rate_achieved=A elapsed_s=E
         late_p99_ms=L smtp_p50_ms=S50 smtp_p99_ms=S99

(rate_achieved = sent / time from the first due time to the last 250 reply;
smtp_*_ms = time from MAIL FROM to the 250 after DATA.)  Exit status 1 if a
message failed.
"""

import argparse
import smtplib
import socket
import sys
import threading
import time


def quantile(values, q):
    if not values:
        return 0.0
    v = sorted(values)
    return v[min(len(v) - 1, int(q * (len(v) - 1) + 0.5))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", required=True)
    ap.add_argument("--port", type=int, default=25)
    ap.add_argument("--rate", type=float, required=True, help="messages per second")
    ap.add_argument("--duration", type=float, help="seconds (count = rate * duration)")
    ap.add_argument("--count", type=int, help="messages (instead of --duration)")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--size", type=int, default=4096, help="message size in bytes")
    ap.add_argument("--sender", default="paced@client.lab.test")
    ap.add_argument("--rcpt", default="rcpt@dest.lab.test")
    ap.add_argument("--helo", default=socket.gethostname())
    args = ap.parse_args()
    if (args.duration is None) == (args.count is None):
        ap.error("give exactly one of --duration and --count")
    count = args.count if args.count is not None else int(round(args.rate * args.duration))

    body_line = ("0123456789" * 7)[:70] + "\r\n"
    tag = f"{int(time.time())}.{socket.gethostname()}"
    lock = threading.Lock()
    state = {"next": 0, "sent": 0, "failed": 0, "last_done": 0.0}
    late_ms, smtp_ms, errors = [], [], []
    start = time.monotonic() + 0.2  # let every thread connect first

    def message(i):
        head = (
            f"From: <{args.sender}>\r\nTo: <{args.rcpt}>\r\n"
            f"Subject: paced {i}\r\nMessage-ID: <paced.{tag}.{i}@client.lab.test>\r\n\r\n"
        )
        need = max(0, args.size - len(head))
        body = body_line * (need // len(body_line) + 1)
        return head + body[:need]

    def worker():
        smtp = None
        while True:
            with lock:
                i = state["next"]
                if i >= count:
                    break
                state["next"] = i + 1
            due = start + i / args.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            t0 = time.monotonic()
            ok = False
            for attempt in range(2):  # one reconnect if the session broke
                try:
                    if smtp is None:
                        smtp = smtplib.SMTP(args.server, args.port, local_hostname=args.helo,
                                            timeout=60)
                    smtp.sendmail(args.sender, [args.rcpt], message(i))
                    ok = True
                    break
                except (smtplib.SMTPException, OSError) as e:
                    errors.append(f"message {i}: {e!r}")
                    try:
                        if smtp is not None:
                            smtp.close()
                    except Exception:
                        pass
                    smtp = None
            t1 = time.monotonic()
            with lock:
                if ok:
                    state["sent"] += 1
                    late_ms.append(max(0.0, (t0 - due) * 1000))
                    smtp_ms.append((t1 - t0) * 1000)
                    state["last_done"] = max(state["last_done"], t1)
                else:
                    state["failed"] += 1
        if smtp is not None:
            try:
                smtp.quit()
            except Exception:
                pass

    threads = [threading.Thread(target=worker) for _ in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    elapsed = max(1e-9, state["last_done"] - start)
    print(
        f"paced: sent={state['sent']} failed={state['failed']} rate_target={args.rate:g} "
        f"rate_achieved={state['sent'] / elapsed:.1f} elapsed_s={elapsed:.2f} "
        f"late_p99_ms={quantile(late_ms, 0.99):.1f} smtp_p50_ms={quantile(smtp_ms, 0.5):.1f} "
        f"smtp_p99_ms={quantile(smtp_ms, 0.99):.1f}"
    )
    for e in errors[:5]:
        print(f"paced: error: {e}", file=sys.stderr)
    return 1 if state["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
