#!/usr/bin/env python3
"""smtp_gone.py HOST PORT TIMEOUT: poll HOST:PORT every 20 ms until it no
longer answers an SMTP greeting with 220 (connection refused, reset, or
nothing within 0.5 s); print the wall-clock time (seconds since the epoch)
of the first such failure. Exit 1 if it kept answering until TIMEOUT."""
import smtplib
import sys
import time

host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + timeout
while time.monotonic() < deadline:
    t = time.time()
    try:
        s = smtplib.SMTP(host, port, timeout=0.5)
        s.quit()
    except (OSError, smtplib.SMTPException):
        print(f"{t:.6f}")
        sys.exit(0)
    time.sleep(0.02)
sys.exit(1)
