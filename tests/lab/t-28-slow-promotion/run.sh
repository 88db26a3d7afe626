#!/bin/bash
#
# t-28-slow-promotion: a switchover whose new primary is slow to come up
# (a loaded host: here its `postfix start` takes 2 s more) must not bounce
# back. The old primary, now following, finds the new one's SMTP refused
# and its link silent until the promotion ends; for handover_grace that is
# "still taking over", not "down" (docs/failover.md, Switchover and
# failback). Without it, three refused probes made the old primary take the
# role straight back at the next epoch (seen in t-10 under load).
#   1. switchover main -> backup, then failback to main, whose Postfix
#      starts 2 s late;
#   2. main serves at epoch 3 and keeps the role: no epoch 4 within 10 s;
#   3. every message answered 250 meanwhile is delivered once.
. "$(dirname "$0")/../lib.sh"

# main is the preferred node: `mailtwin failback` moves the role to it.
export MT_PREFERRED=main
pair_setup t-28
mt_gate main
mt_gate backup
# main's mailtwind finds this `postfix` first in its PATH.
slow=$LAB_DIR/slow-bin
mkdir -p "$slow"
cat >"$slow/postfix" <<'SH'
#!/bin/sh
# `postfix -c DIR start` takes 2 s more, as on a loaded host.
[ "$3" = start ] && sleep 2
exec /usr/sbin/postfix "$@"
SH
chmod +x "$slow/postfix"
lab_postfix_start main
rm -f "$LAB_DIR/main/mailtwin/control.sock"
lab_bg main "$LAB_DIR/main/mailtwind.log" env "PATH=$slow:$PATH" \
	"$MAILTWIN_BIN/mailtwind" --config "$LAB_DIR/main/mailtwin.toml" >/dev/null
MT_PID_main=$LAB_BG_PID
lab_wait_for 10 test -S "$LAB_DIR/main/mailtwin/control.sock" || fail "mailtwind on main did not start"
mt_start backup >/dev/null || fail "mailtwind on backup did not start"
mt_wait_state main live 20 || fail "replication link did not come up"
start_sender 20 "a@sink.lab.test"
sleep 2

# 1. The role goes to backup (quick there), and then back to main, whose
# Postfix starts 2 s late. backup, the old primary, has followed main
# before: a primary it saw connect, so its failed probes could take over.
out=$(mt main switchover) || fail "switchover failed: $out"
lab_wait_for 15 mt_role_is backup primary 2 || fail "backup is not primary at epoch 2"
mt_wait_state backup live 20 || fail "backup does not replicate to main"
lab_wait_for 20 mt_handover_done main || fail "main's set-aside queue was not settled"
sleep 1
t0=$EPOCHREALTIME
out=$(mt main failback) || fail "failback failed: $out"
echo "1. $out"
lab_wait_for 15 mt_role_is main primary 3 || fail "main is not primary at epoch 3: $(mt_status main role) $(mt_status main epoch)"
lab_wait_for 10 lab_postfix_running main || fail "main's Postfix does not run"
up=$(awk -v a="$EPOCHREALTIME" -v b="$t0" 'BEGIN { printf "%.2f", a - b }')
echo "   main serves at epoch 3, $up s after the failback was asked (its Postfix started 2 s late)"

# 2. It keeps the role.
sleep 10
mt_role_is main primary 3 || fail "main lost the role: $(mt_status main role) at epoch $(mt_status main epoch); $(grep -m1 'taking over at epoch' "$LAB_DIR/backup/mailtwind.log" || true)"
mt_role_is backup standby 3 || fail "backup took the role back: $(mt_status backup role) at epoch $(mt_status backup epoch); $(grep -m1 'taking over at epoch' "$LAB_DIR/backup/mailtwind.log" || true)"
echo "2. 10 s later: main primary at epoch 3, backup standby: '$(grep -m1 -o 'handed the role.*' "$LAB_DIR/backup/mailtwind.log" || echo "backup never had to wait")'"

# 3. Nothing lost.
settle_and_account main "$log" "$SINK_OK"
echo "3. $TOTAL messages answered 250: $LOST lost, $DUPS delivered twice"
((LOST == 0)) || fail "$LOST accepted messages were lost"
((DUPS == 0)) || fail "$DUPS messages delivered twice"
pass
