#!/usr/bin/env python3
"""hostile_peer.py: a peer that speaks docs/protocol.md over mutual TLS with a
valid lab certificate, and tries every frame type in every connection state
of a standby (docs/protocol.md §5, "Connection states").

  hostile_peer.py --addr IP:PORT --ca CA --cert CERT --key KEY --cluster C
                  --mirror DIR --cli "mailtwin --socket S" [--live-check]

For each state (hello: nothing sent yet; catchup: a proper Hello answered;
live: after SyncDone) and each of the 20 frame types, it drives a fresh
connection into the state, sends the frame and, in the same write, poison
behind it: a complete File change and a Delete of a message the mirror holds.
- An illegal frame must get an Error (code 1, protocol) and the connection
  closed, with the mirror (every file, mode, mtime and byte), the node's role
  and epoch unchanged: neither the frame nor the poison behind it applied.
- A legal frame must leave the session working: a change after it is
  acknowledged (Ack), and legal changes are applied.
Then: a Hello of another cluster refused (Error 2) with changes buffered
behind it, none applied; a Switchover at an epoch the peer picks refused.
Prints one line per case; exits 1 on the first failure.
"""
import argparse
import hashlib
import json
import os
import shlex
import socket
import ssl
import struct
import subprocess
import sys
import time
import zlib

HELLO, ERROR, HEARTBEAT, MANIFEST, SYNCDONE = 1, 2, 3, 10, 11
FILE, PATCH, META, MOVE, DELETE, LOGDATA, LOGDELETE = 20, 21, 22, 23, 24, 25, 26
ACK, HFILE, HLOG, HDONE, HRESULT = 30, 40, 41, 42, 43
SWITCHOVER, SWREQ, NODESTATUS = 50, 51, 52
ALL = [HELLO, ERROR, HEARTBEAT, MANIFEST, SYNCDONE, FILE, PATCH, META, MOVE, DELETE, LOGDATA,
       LOGDELETE, ACK, HFILE, HLOG, HDONE, HRESULT, SWITCHOVER, SWREQ, NODESTATUS]
NAMES = {HELLO: "Hello", ERROR: "Error", HEARTBEAT: "Heartbeat", MANIFEST: "Manifest",
         SYNCDONE: "SyncDone", FILE: "File", PATCH: "Patch", META: "Meta", MOVE: "Move",
         DELETE: "Delete", LOGDATA: "LogData", LOGDELETE: "LogDelete", ACK: "Ack",
         HFILE: "HandoverFile", HLOG: "HandoverLog", HDONE: "HandoverDone",
         HRESULT: "HandoverResult", SWITCHOVER: "Switchover", SWREQ: "SwitchoverRequest",
         NODESTATUS: "NodeStatus"}
CHANGES = {FILE, PATCH, META, MOVE, DELETE, LOGDATA, LOGDELETE}


def legal(state, t):
    """docs/protocol.md §5, written here independently of the daemon."""
    if t in (HEARTBEAT, ERROR):
        return True
    if state == "hello":
        return t == HELLO
    if t in CHANGES or t == SYNCDONE:
        return True
    return state == "live" and t in (NODESTATUS, HRESULT, SWITCHOVER)


def s(text):
    b = text.encode()
    return struct.pack(">H", len(b)) + b


def blob(b):
    return struct.pack(">I", len(b)) + b


def frame(t, payload=b"", seq=0):
    body = struct.pack(">BBHQ", t, 0, 0, seq) + payload
    crc = zlib.crc32(body) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", crc)


def file_payload(qid, data=b"hostile bytes\n", queue=4):
    return (s(qid) + struct.pack(">BIqQQ", queue, 0o700, int(time.time()) * 10**9, len(data), 0)
            + blob(data))


def payload_of(t, qid, args):
    """A well-formed payload of type t, naming queue ID qid where it names one."""
    now = int(time.time()) * 10**9
    if t == HELLO:
        return hello(args.cluster, args.epoch)
    if t == ERROR:
        return struct.pack(">H", 1) + s("hostile goodbye")
    if t == HEARTBEAT:
        return struct.pack(">q", now)
    if t == MANIFEST:
        return struct.pack(">BI", 1, 0)
    if t == SYNCDONE:
        return struct.pack(">Q", 0)
    if t in (FILE, HFILE):
        return file_payload(qid)
    if t == PATCH:
        return s(qid) + struct.pack(">Q", 0) + blob(b"H")
    if t == META:
        return s(qid) + struct.pack(">Iq", 0o700, now)
    if t == MOVE:
        return s(qid) + struct.pack(">B", 5)
    if t == DELETE:
        return s(qid)
    if t in (LOGDATA, HLOG):
        return struct.pack(">B", 1) + s(qid) + struct.pack(">Q", 0) + blob(b"log\n")
    if t == LOGDELETE:
        return struct.pack(">B", 1) + s(qid)
    if t == ACK:
        return struct.pack(">Q", 0)
    if t in (HDONE,):
        return s(qid)
    if t == HRESULT:
        return s(qid) + struct.pack(">B", 1) + s("ok")
    if t == SWITCHOVER:
        return struct.pack(">Q", args.epoch + 1000) + s("hostile switchover")
    if t == SWREQ:
        return s("hostile request")
    if t == NODESTATUS:
        return (struct.pack(">BQB", 1, args.epoch, 2) + struct.pack(">6I", *([0] * 6))
                + struct.pack(">q", -1) + s("hostile status"))
    raise ValueError(t)


def hello(cluster, epoch, node="main"):
    return (struct.pack(">HB", 1, 1) + s(cluster) + s(node)
            + struct.pack(">QQ", epoch, 0xBADC0DE))


class Peer:
    def __init__(self, args):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_verify_locations(args.ca)
        ctx.load_cert_chain(args.cert, args.key)
        ctx.check_hostname = False
        host, port = args.addr.rsplit(":", 1)
        raw = socket.create_connection((host, int(port)), timeout=5)
        self.sock = ctx.wrap_socket(raw)
        self.buf = b""
        self.seq = 0

    def send(self, data):
        self.sock.sendall(data)

    def recv_frame(self, timeout=5.0):
        """(type, seq, payload), or None when the standby closed the connection."""
        deadline = time.time() + timeout
        while True:
            if len(self.buf) >= 16:
                n = struct.unpack(">I", self.buf[:4])[0]
                if len(self.buf) >= 20 + n:
                    t = self.buf[4]
                    seq = struct.unpack(">Q", self.buf[8:16])[0]
                    payload = self.buf[16:16 + n]
                    self.buf = self.buf[20 + n:]
                    return t, seq, payload
            left = deadline - time.time()
            if left <= 0:
                raise TimeoutError("no frame from the standby")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                return None
            if not chunk:
                return None
            self.buf += chunk

    def wait_for(self, want, timeout=5.0):
        """Frames until one of type want (skipping heartbeats, hellos, manifests)."""
        while True:
            f = self.recv_frame(timeout)
            if f is None or f[0] == want:
                return f
            if f[0] == ERROR and want != ERROR:
                return f

    def next_seq(self):
        self.seq += 1
        return self.seq

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def mirror_digest(root):
    h = hashlib.sha256()
    for dirpath, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(files):
            if dirpath == root and name.startswith("."):
                continue  # mailtwind's own write test of the filesystem, every 5 s
            p = os.path.join(dirpath, name)
            try:
                st = os.stat(p)
                with open(p, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                continue
            h.update(f"{os.path.relpath(p, root)} {st.st_mode:o} {st.st_mtime_ns} {len(data)}\n".encode())
            h.update(hashlib.sha256(data).digest())
    return h.hexdigest()


def node_view(args):
    out = subprocess.run(shlex.split(args.cli) + ["status", "--json"], capture_output=True,
                         text=True, timeout=20, check=True).stdout
    st = json.loads(out)
    return st.get("role"), st.get("epoch")


def mirror_ids(root):
    return {n for _d, _s, files in os.walk(root) for n in files}


class Case:
    counter = 0

    def __init__(self, args):
        self.args = args

    def fresh_id(self, tag):
        Case.counter += 1
        return f"{tag}{Case.counter:04d}hostileQ"


def enter(args, state):
    """A fresh connection in state: hello, catchup or live."""
    p = Peer(args)
    if state == "hello":
        return p
    p.send(frame(HELLO, hello(args.cluster, args.epoch)))
    f = p.wait_for(HELLO)
    if f is None or f[0] != HELLO:
        raise SystemExit(f"FAIL: no Hello back from the standby ({f})")
    while True:  # the manifest, up to its last frame
        f = p.wait_for(MANIFEST)
        if f is None or f[0] != MANIFEST:
            raise SystemExit(f"FAIL: no manifest after a proper Hello ({f})")
        if f[2][0] == 1:
            break
    if state == "live":
        p.send(frame(SYNCDONE, struct.pack(">Q", 0)))
    return p


def expect_refused(p, what):
    f = p.wait_for(ERROR, timeout=5)
    if f is None or f[0] != ERROR:
        raise SystemExit(f"FAIL: {what}: no Error frame from the standby ({f})")
    code = struct.unpack(">H", f[2][:2])[0]
    text = f[2][4:].decode(errors="replace")
    # Then the connection must close.
    while True:
        g = p.recv_frame(timeout=5)
        if g is None:
            break
    return code, text


def check_unchanged(args, before, what):
    after = (mirror_digest(args.mirror), node_view(args))
    if after != before:
        raise SystemExit(f"FAIL: {what}: the standby changed: {before} -> {after}")


def run_case(args, state, t, victim):
    c = Case(args)
    qid = c.fresh_id("X")
    poison_id = c.fresh_id("P")
    before = (mirror_digest(args.mirror), node_view(args))
    p = enter(args, state)
    # Legal changes must name a message the mirror holds (Patch, Meta, Move).
    if legal(state, t) and t in CHANGES:
        p.send(frame(FILE, file_payload(qid), p.next_seq()))
    seq = p.next_seq() if t in CHANGES else 0
    data = frame(t, payload_of(t, qid, args), seq)
    # The poison: frames that must never be applied behind an illegal one.
    poison = (frame(SYNCDONE, struct.pack(">Q", 0))
              + frame(FILE, file_payload(poison_id), seq + 1)
              + frame(DELETE, s(victim), seq + 2))
    what = f"{state}: {NAMES[t]}"
    if not legal(state, t):
        p.send(data + poison)
        code, text = expect_refused(p, what)
        p.close()
        if code != 1:
            raise SystemExit(f"FAIL: {what}: Error code {code} ({text}), wanted 1 (protocol)")
        time.sleep(0.2)
        check_unchanged(args, before, what)
        print(f"{what:<28} refused, nothing changed ({text})")
        return
    if t == ERROR:
        p.send(data + poison)
        # Whatever the standby had already sent (heartbeats, its status
        # report, a manifest) may come first; then the connection must
        # close, within 5 s.
        deadline = time.time() + 5
        f = "open"
        try:
            while f is not None and time.time() < deadline:
                f = p.recv_frame(timeout=max(0.01, deadline - time.time()))
        except TimeoutError:
            f = "open"
        p.close()
        time.sleep(0.2)
        if f is not None:
            raise SystemExit(f"FAIL: {what}: the standby kept the session after the peer's Error")
        check_unchanged(args, before, what)
        print(f"{what:<28} legal: the session ends, nothing behind it applied")
        return
    if t == SWITCHOVER:
        # Legal in live, but at an epoch the peer picks: refused (stale epoch).
        p.send(data + poison)
        code, text = expect_refused(p, what)
        p.close()
        time.sleep(0.2)
        check_unchanged(args, before, what)
        if code != 4:
            raise SystemExit(f"FAIL: {what}: Error code {code} ({text}), wanted 4")
        print(f"{what:<28} at epoch {args.epoch + 1000}: refused, nothing changed ({text})")
        return
    if t == HELLO:  # a proper Hello: the standby answers with its own
        p.send(data)
        f = p.wait_for(HELLO)
        if f is None or f[0] != HELLO:
            raise SystemExit(f"FAIL: {what}: no Hello back ({f})")
    else:
        p.send(data)
        if state == "hello":  # a heartbeat: the Hello may still follow
            p.send(frame(HELLO, hello(args.cluster, args.epoch)))
            f = p.wait_for(HELLO)
            if f is None or f[0] != HELLO:
                raise SystemExit(f"FAIL: {what}: no Hello back after it ({f})")
    # The session still works: a change after it is applied and acknowledged.
    probe_id = c.fresh_id("L")
    probe_seq = p.next_seq()
    p.send(frame(FILE, file_payload(probe_id), probe_seq))
    while True:
        f = p.wait_for(ACK, timeout=5)
        if f is None or f[0] != ACK:
            raise SystemExit(f"FAIL: {what}: legal, but the session broke ({f})")
        if struct.unpack(">Q", f[2])[0] >= probe_seq:
            break
    p.close()
    time.sleep(0.2)
    ids = mirror_ids(args.mirror)
    if probe_id not in ids:
        raise SystemExit(f"FAIL: {what}: the acknowledged change is not in the mirror")
    if t in (FILE, META, MOVE, PATCH) and qid not in ids:
        raise SystemExit(f"FAIL: {what}: the legal change was not applied")
    print(f"{what:<28} legal: applied, session works")


def wrong_cluster(args, victim):
    """Error 2, and the changes already buffered behind the Hello stay unapplied."""
    before = (mirror_digest(args.mirror), node_view(args))
    p = Peer(args)
    pid = Case(args).fresh_id("W")
    p.send(frame(HELLO, hello("not-" + args.cluster, args.epoch))
           + frame(SYNCDONE, struct.pack(">Q", 0))
           + frame(FILE, file_payload(pid), 1) + frame(DELETE, s(victim), 2))
    code, text = expect_refused(p, "wrong cluster")
    p.close()
    time.sleep(0.2)
    check_unchanged(args, before, "wrong cluster")
    if code != 2:
        raise SystemExit(f"FAIL: wrong cluster: Error code {code} ({text}), wanted 2")
    print(f"{'hello: Hello of another cluster':<28} refused (code 2), frames behind it not applied")


def far_epochs(args, victim):
    """A Hello claiming an epoch far ahead (or at 2^64-1): refused (Error 4),
    never stored, nothing behind it applied."""
    for epoch in (args.epoch + 1001, 2**64 - 1):
        before = (mirror_digest(args.mirror), node_view(args))
        p = Peer(args)
        pid = Case(args).fresh_id("E")
        p.send(frame(HELLO, hello(args.cluster, epoch)) + frame(SYNCDONE, struct.pack(">Q", 0))
               + frame(FILE, file_payload(pid), 1) + frame(DELETE, s(victim), 2)
               + frame(SWITCHOVER, struct.pack(">Q", epoch + 1 if epoch < 2**64 - 1 else 0)
                       + s("wrap")))
        code, text = expect_refused(p, f"epoch {epoch}")
        p.close()
        time.sleep(0.2)
        check_unchanged(args, before, f"Hello at epoch {epoch}")
        if code != 4:
            raise SystemExit(f"FAIL: Hello at epoch {epoch}: Error code {code} ({text}), wanted 4")
        print(f"hello: Hello at epoch {epoch}: refused (code 4), epoch unchanged")


def main():
    ap = argparse.ArgumentParser()
    for k in ("addr", "ca", "cert", "key", "cluster", "mirror", "cli"):
        ap.add_argument("--" + k, required=True)
    ap.add_argument("--only-refusals", action="store_true",
                    help="only cases that must change nothing (a real primary stays connected)")
    args = ap.parse_args()
    role, epoch = node_view(args)
    args.epoch = epoch
    victims = sorted(i for i in mirror_ids(args.mirror) if i.isalnum() and len(i) >= 6)
    if not victims:
        raise SystemExit("FAIL: the mirror holds no message to protect")
    victim = victims[0]
    print(f"standby is {role} at epoch {epoch}; protecting {victim} among {len(victims)} files")
    wrong_cluster(args, victim)
    far_epochs(args, victim)
    for state in ("hello", "catchup", "live"):
        for t in ALL:
            if args.only_refusals and (state != "hello" or legal(state, t)):
                continue
            run_case(args, state, t, victim)
    if victim not in mirror_ids(args.mirror):
        raise SystemExit(f"FAIL: {victim} was deleted from the mirror")
    print("every case held")


if __name__ == "__main__":
    sys.exit(main())
