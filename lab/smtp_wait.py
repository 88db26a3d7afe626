#!/usr/bin/env python3
"""smtp_wait.py HOST PORT TIMEOUT: poll HOST:PORT every 20 ms until it
answers an SMTP greeting and EHLO with 2xx; print the wall-clock time
(seconds since the epoch) of the first success. Exit 1 on timeout."""
import smtplib
import sys
import time

host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + timeout
while time.monotonic() < deadline:
    try:
        s = smtplib.SMTP(host, port, timeout=0.5)
        code, _ = s.ehlo("smtp-wait")
        s.quit()
        if 200 <= code < 300:
            print(f"{time.time():.6f}")
            sys.exit(0)
    except (OSError, smtplib.SMTPException):
        pass
    time.sleep(0.02)
sys.exit(1)
