#!/usr/bin/env python3
"""late_sink.py: an SMTP sink that stores each message at once and answers
its 250 only --delay seconds later.

That is the window in which a delivering client that is killed (Postfix's
smtp agent under `postfix stop`) leaves a message the server holds but the
client has not marked done: whoever delivers the queue next sends it again.
lab tests use it to prove a switchover does not cut deliveries.

smtp-sink -W .:N would do, but it answers pipelined commands out of order
(a QUIT sent right behind the "." gets 221 and the message never its 250),
and crashes under Postfix's client. This one handles commands strictly in
order, pipelined or not.

Each message becomes one file in --dir, in smtp-sink's dump format, so that
lab_sink_rcpts reads both: X-Mail-Args:, one X-Rcpt-Args: per recipient,
then the message (LF line ends, dot-stuffing undone) and an empty line.
Written under a dot-name and renamed: a file that exists is complete.
"""
import argparse
import asyncio
import os
import secrets
import time


async def session(reader, writer, args):
    async def reply(text):
        writer.write(text.encode() + b"\r\n")
        await writer.drain()

    mail, rcpts = None, []
    await reply("220 late.lab.test ESMTP late_sink")
    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = line.decode("latin-1").rstrip("\r\n")
        verb = cmd.split(" ", 1)[0].upper()
        arg = cmd[len(verb):].strip()
        if verb == "EHLO":
            await reply("250-late.lab.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 0")
        elif verb == "HELO":
            await reply("250 late.lab.test")
        elif verb == "MAIL":
            mail, rcpts = arg.split(":", 1)[-1].strip(), []
            await reply("250 2.1.0 Ok")
        elif verb == "RCPT":
            if mail is None:
                await reply("503 5.5.1 Error: need MAIL command")
                continue
            rcpts.append(arg.split(":", 1)[-1].strip())
            await reply("250 2.1.5 Ok")
        elif verb == "DATA":
            if not rcpts:
                await reply("503 5.5.1 Error: need RCPT command")
                continue
            await reply("354 End data with <CR><LF>.<CR><LF>")
            body = []
            while True:
                dl = await reader.readline()
                if not dl:
                    return  # lost mid-message: nothing stored
                if dl in (b".\r\n", b".\n"):
                    break
                if dl.startswith(b"."):
                    dl = dl[1:]
                body.append(dl.rstrip(b"\r\n") + b"\n")
            head = [f"X-Mail-Args: {mail}\n".encode()]
            head += [f"X-Rcpt-Args: {r}\n".encode() for r in rcpts]
            name = time.strftime("%Y%m%d-%H%M%S.") + secrets.token_hex(4)
            tmp = os.path.join(args.dir, "." + name)
            with open(tmp, "wb") as f:
                f.write(b"".join(head + body) + b"\n")
            os.rename(tmp, os.path.join(args.dir, name))
            mail, rcpts = None, []
            await asyncio.sleep(args.delay)  # the window
            await reply("250 2.0.0 Ok: stored")
        elif verb == "RSET":
            mail, rcpts = None, []
            await reply("250 2.0.0 Ok")
        elif verb == "NOOP":
            await reply("250 2.0.0 Ok")
        elif verb == "QUIT":
            await reply("221 2.0.0 Bye")
            break
        else:
            await reply("502 5.5.2 Error: command not recognized")
    writer.close()


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listen", required=True, help="IP:PORT")
    ap.add_argument("--dir", required=True)
    ap.add_argument("--delay", type=float, default=1.0)
    args = ap.parse_args()
    host, port = args.listen.rsplit(":", 1)

    async def handle(r, w):
        try:
            await session(r, w, args)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass

    server = await asyncio.start_server(handle, host, int(port), backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
