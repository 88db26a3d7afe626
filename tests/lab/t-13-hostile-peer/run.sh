#!/bin/bash
#
# t-13-hostile-peer: a peer with a valid certificate of the cluster that does
# not follow the protocol (docs/protocol.md §5, "Connection states") changes
# nothing on the standby, and cannot disturb the real primary's session.
#   1. with main replicating to backup: for every frame type that is illegal
#      before a Hello, and for a Hello of another cluster, a connection from a
#      hostile client holding main's certificate is refused (Error 1 or 2),
#      the frames buffered behind the refusal (SyncDone, a File, a Delete of a
#      mirrored message) are not applied, backup's mirror, role and epoch are
#      unchanged, and main's session is never replaced (no reconnect);
#   2. 20 more such connections in a row: main's session stays the same one;
#      an idle connection that never starts TLS is closed after peer_timeout
#      and logged with its address and "timed out";
#   3. with main's mailtwind stopped: every frame type in every state (hello,
#      catchup, live): illegal ones refused, nothing changed; legal ones
#      after a proper Hello applied and acknowledged; a Switchover at an
#      epoch the peer picks refused (Error 4), backup stays standby at its epoch.
. "$(dirname "$0")/../lib.sh"
export MT_FAILOVER=manual

pair_setup t-13
pair_start

# Something to protect: two messages that stay deferred (nothing listens on
# dead.lab.test), replicated to backup's mirror.
send_mail s@client.lab.test a@dead.lab.test >/dev/null
send_mail s@client.lab.test b@dead.lab.test >/dev/null
mt_wait_synced main backup 20 || fail "mirror did not converge"
sleep 2  # the first delivery attempt (and its defer log) settles
mt_wait_synced main backup 20 || fail "mirror did not converge after the first attempt"

hostile() {  # hostile_peer.py against backup with main's certificate
	lab_exec main python3 "$REPO/lab/hostile_peer.py" --addr "$(lab_ip backup):$MT_PORT" \
		--ca "$LAB_DIR/pki/ca.pem" --cert "$LAB_DIR/pki/main.pem" --key "$LAB_DIR/pki/main.key" \
		--cluster lab --mirror "$LAB_DIR/backup/mirror" \
		--cli "$MAILTWIN_BIN/mailtwin --socket $LAB_DIR/backup/mailtwin/control.sock" "$@"
}
sessions() { grep -c "primary main connected from" "$LAB_DIR/backup/mailtwind.log" || true; }

# 1. Refusals while the real primary is connected.
before=$(sessions)
hostile --only-refusals || fail "a hostile frame before the Hello was not refused cleanly"
[[ $(mt_status main state) == live ]] || fail "main's link is not live after the hostile peer"
[[ $(sessions) == "$before" ]] || fail "the hostile peer replaced main's session ($before -> $(sessions) sessions)"
echo "1. before a Hello: every illegal frame refused, nothing applied, main's session kept"

# 2. A burst of connections that never pass the Hello.
for i in $(seq 20); do
	lab_exec main python3 - "$(lab_ip backup)" "$MT_PORT" "$LAB_DIR/pki" <<-'PY' || true
		import socket, ssl, struct, sys, zlib
		ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False
		ctx.load_verify_locations(sys.argv[3] + "/ca.pem")
		ctx.load_cert_chain(sys.argv[3] + "/main.pem", sys.argv[3] + "/main.key")
		s = ctx.wrap_socket(socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3))
		p = struct.pack(">HB", 1, 1) + struct.pack(">H", 5) + b"other" + struct.pack(">H", 4) + b"main" + struct.pack(">QQ", 1, 1)
		b = struct.pack(">BBHQ", 1, 0, 0, 0) + p
		s.sendall(struct.pack(">I", len(p)) + b + struct.pack(">I", zlib.crc32(b)))
		s.recv(4096)
	PY
done
sleep 1
[[ $(mt_status main state) == live ]] || fail "main's link is not live after 20 hostile connections"
[[ $(sessions) == "$before" ]] || fail "hostile connections replaced main's session ($before -> $(sessions))"
echo "2. 20 connections of another cluster: main's session never replaced"

# An idle TCP connection that never starts TLS: closed after peer_timeout,
# and the log says from where and that it timed out.
lab_exec main timeout 5 bash -c "exec 3<>/dev/tcp/$(lab_ip backup)/$MT_PORT; sleep 4" || true
grep -q "TLS handshake from $(lab_ip main):[0-9]* failed: no handshake within 2000 ms (timed out)" \
	"$LAB_DIR/backup/mailtwind.log" ||
	fail "an idle connection is not logged with its address and a timeout: $(grep 'TLS handshake' "$LAB_DIR/backup/mailtwind.log" | tail -1)"
echo "   an idle connection: $(grep -o 'TLS handshake from .*(timed out)' "$LAB_DIR/backup/mailtwind.log" | tail -1)"

# 3. Every frame type in every state, with the real primary gone.
mt_stop main
lab_wait_for 10 _mt_state_is backup listening || fail "backup did not notice main leaving"
hostile || fail "the state machine let something through"
mt_role_is backup standby 1 || fail "backup is not standby at epoch 1 any more"
echo "3. every frame type in every state: illegal refused, legal applied"

pass
