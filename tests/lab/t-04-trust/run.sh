#!/bin/bash
#
# t-04-trust: nothing untrusted gets in.
#   1. a standby of another cluster (same CA) is refused, and says why;
#   2. a primary whose certificate comes from another CA never gets past TLS;
#   3. garbage on the replication port changes nothing;
#   4. the control socket answers only root, even when its mode lets anyone connect;
#   5. a node whose Postfix uses short queue IDs refuses to start, and says why.
# After each, the real pair still replicates.
. "$(dirname "$0")/../lib.sh"

pair_setup t-04
pair_start

# 1. Another cluster: a second standby "rogue" on its own host, configured
# for cluster "other", with a certificate from our CA.
lab_host rogue 3
lab_postfix_create rogue
mt_cert "$LAB_DIR/pki" rogue || fail "certificate for rogue"
MT_CLUSTER=other mt_config rogue standby main
sed -i 's/^peer_name = .*/peer_name = "main"/' "$LAB_DIR/rogue/mailtwin.toml"
mt_start rogue >/dev/null || fail "rogue standby did not start"
# Point main at the rogue: restart main's daemon with peer = rogue.
mt_stop main
sed -i "s/^peer = .*/peer = \"$(lab_ip rogue):$MT_PORT\"/; s/^peer_name = .*/peer_name = \"rogue\"/" \
	"$LAB_DIR/main/mailtwin.toml"
mt_start main >/dev/null || fail "main did not restart"
refused() { grep -q "belongs to cluster 'lab', not 'other'" "$LAB_DIR/rogue/mailtwind.log" "$LAB_DIR/main/mailtwind.log"; }
lab_wait_for 10 refused || fail "the cross-cluster connection was not refused with a reason"
[[ $(mt_status main state) != live ]] || fail "main went live with a standby of another cluster"
[[ -z $(find "$LAB_DIR/rogue/mirror" -type f 2>/dev/null) ]] || fail "rogue received files"
echo "1. another cluster: refused ($(grep -ho "belongs to cluster '[a-z]*', not '[a-z]*'" "$LAB_DIR/main/mailtwind.log" | head -1))"

# 2. A primary with a certificate from a foreign CA, talking to our backup.
foreign=$LAB_DIR/foreign
mt_ca "$foreign" "evil CA" && mt_cert "$foreign" main || fail "the foreign CA"
mt_stop main
sed -i "s/^peer = .*/peer = \"$(lab_ip backup):$MT_PORT\"/; s/^peer_name = .*/peer_name = \"backup\"/" \
	"$LAB_DIR/main/mailtwin.toml"
cp "$LAB_DIR/main/mailtwin.toml" "$LAB_DIR/main/mailtwin.toml.good"
# (ca_file the foreign CA too: mailtwind refuses a certificate its own CA
# does not sign, as check-config does.)
sed -i "s|^cert_file = .*|cert_file = \"$foreign/main.pem\"|; s|^key_file = .*|key_file = \"$foreign/main.key\"|; s|^ca_file = .*|ca_file = \"$foreign/ca.pem\"|" \
	"$LAB_DIR/main/mailtwin.toml"
mt_start main >/dev/null || fail "main did not restart"
tls_refused() { grep -q "TLS handshake from .* failed" "$LAB_DIR/backup/mailtwind.log"; }
lab_wait_for 10 tls_refused || fail "backup did not refuse a certificate from a foreign CA"
[[ $(mt_status main state) != live ]] || fail "a foreign certificate got through"
echo "2. foreign CA: $(grep -ho "TLS handshake from .* failed: .*" "$LAB_DIR/backup/mailtwind.log" | head -1)"

# 3. Garbage on the replication port (no TLS at all, then random bytes).
head -c 4096 /dev/urandom | lab_exec client timeout 3 bash -c \
	"cat >/dev/tcp/$(lab_ip backup)/$MT_PORT" 2>/dev/null || true
printf 'GET / HTTP/1.0\r\n\r\n' | lab_exec client timeout 3 bash -c \
	"cat >/dev/tcp/$(lab_ip backup)/$MT_PORT" 2>/dev/null || true

# The good configuration again: the pair must replicate as before.
mt_stop main
cp "$LAB_DIR/main/mailtwin.toml.good" "$LAB_DIR/main/mailtwin.toml"
mt_start main >/dev/null || fail "main did not restart"
mt_wait_state main live 20 || fail "the real pair did not reconnect after the garbage"
send_mail s@client.lab.test z@dead.lab.test >/dev/null
mt_wait_synced main backup 20 || fail "mirror did not converge"
echo "3. garbage: ignored; the pair replicates"

# 4. The control socket: root only. The socket is mode 0600, so a plain
# connect() by another user fails before mailtwind is even asked. That
# alone proves nothing about mailtwind's own check (SO_PEERCRED): make the
# socket reachable to everyone, as a careless chmod would, and the daemon
# must still refuse, say why, and log who it refused.
chmod 755 "$LAB_DIR/backup/mailtwin"
sock=$LAB_DIR/backup/mailtwin/control.sock
chmod 666 "$sock"
out=$(runuser -u nobody -- "$MAILTWIN_BIN/mailtwin" --socket "$sock" status 2>&1) &&
	fail "user nobody could use the control socket: $out"
grep -q "permission denied: only root may control mailtwind" <<<"$out" ||
	fail "the refusal did not come from mailtwind's credential check: $out"
grep -q "control: refused a request from uid $(id -u nobody)" "$LAB_DIR/backup/mailtwind.log" ||
	fail "mailtwind did not log the refused uid"
mt_status backup role >/dev/null || fail "root can no longer use the control socket"
chmod 600 "$sock"
echo "4. control socket: user nobody refused by the credential check ($out)"

# 5. Short queue IDs: check-config explains, mailtwind refuses to start.
mt "main" check-config "$LAB_DIR/main/mailtwin.toml" >/dev/null || fail "check-config rejects a good file"
lab_postconf rogue -e "enable_long_queue_ids = no"
mt_config rogue standby main
out=$(mt rogue check-config "$LAB_DIR/rogue/mailtwin.toml" 2>&1) && fail "check-config accepted short queue IDs"
grep -q "short queue IDs" <<<"$out" || fail "check-config did not explain: $out"
lab_exec rogue "$MAILTWIN_BIN/mailtwind" --config "$LAB_DIR/rogue/mailtwin.toml" \
	>"$LAB_DIR/rogue/short.log" 2>&1 && fail "mailtwind started with short queue IDs"
grep -q "enable_long_queue_ids=yes" "$LAB_DIR/rogue/short.log" || fail "mailtwind did not say what to do"
echo "5. short queue IDs: refused ($(grep -o "uses short queue IDs[^;]*" "$LAB_DIR/rogue/short.log" | head -1))"
pass
