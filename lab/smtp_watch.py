#!/usr/bin/env python3
"""smtp_watch.py HOST PORT SECONDS [--every MS] [--timeout S] [--once-after MS]

What clients of HOST:PORT live through while the node behind it changes: a
new connection attempt starts every MS milliseconds (default 20), each
waiting up to --timeout seconds (default 5) for an SMTP greeting, attempts
overlapping (a dead host that drops SYNs makes them hang; they must not
delay the next). With --once-after MS, one more client starts MS after the
beginning and waits up to 30 s, as a sending MTA's single connect does: a
retransmitted SYN of that one connection may reach the address's new
holder. Runs SECONDS seconds, then prints a line per attempt,
"attempt START END OUTCOME" (OUTCOME ok, refused, timeout or other), and a
last line of key=value (times are seconds since the epoch; NA when nothing
happened):

  start=T first_ok=T (first greeting received) first_ok_started=T (start of
  the earliest attempt that got one) attempts=N ok=N refused=N timeout=N
  other=N once_start=T once_ok=T|NA once_outcome=ok|refused|timeout|other
  once_s=S
"""
import argparse
import asyncio
import time


async def attempt(host, port, timeout):
    t = time.time()
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        try:
            line = await asyncio.wait_for(r.readline(), max(0.001, timeout - (time.time() - t)))
        finally:
            w.close()
        if line.startswith(b"220"):
            return t, time.time(), "ok"
        return t, time.time(), "other"
    except ConnectionRefusedError:
        return t, time.time(), "refused"
    except asyncio.TimeoutError:
        return t, time.time(), "timeout"
    except OSError:
        return t, time.time(), "other"


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("seconds", type=float)
    ap.add_argument("--every", type=float, default=20)
    ap.add_argument("--timeout", type=float, default=5)
    ap.add_argument("--once-after", type=float)
    a = ap.parse_args()
    start = time.time()
    tasks = []
    once = None
    if a.once_after is not None:
        async def single():
            await asyncio.sleep(a.once_after / 1000)
            return await attempt(a.host, a.port, 30)
        once = asyncio.ensure_future(single())
    end = time.monotonic() + a.seconds
    while time.monotonic() < end:
        tasks.append(asyncio.ensure_future(attempt(a.host, a.port, a.timeout)))
        await asyncio.sleep(a.every / 1000)
    results = await asyncio.gather(*tasks)
    for s, e, o in results:
        print(f"attempt {s:.6f} {e:.6f} {o}")
    counts = {"ok": 0, "refused": 0, "timeout": 0, "other": 0}
    for _, _, o in results:
        counts[o] += 1
    oks = [(s, e) for s, e, o in results if o == "ok"]
    out = {
        "start": f"{start:.6f}",
        "first_ok": f"{min(e for _, e in oks):.6f}" if oks else "NA",
        "first_ok_started": f"{min(s for s, _ in oks):.6f}" if oks else "NA",
        "attempts": len(results),
        **counts,
    }
    if once is not None:
        s, e, o = await once
        out.update(once_start=f"{s:.6f}", once_ok=f"{e:.6f}" if o == "ok" else "NA", once_outcome=o,
                   once_s=f"{e - s:.3f}")
    print(" ".join(f"{k}={v}" for k, v in out.items()), flush=True)


asyncio.run(main())
