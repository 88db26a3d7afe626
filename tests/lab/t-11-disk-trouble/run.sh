#!/bin/bash
#
# t-11-disk-trouble: the primary's disk fills up; the role moves to the
# healthy standby, and comes back only once the disk is healthy again.
# main's whole directory (queue, mirror, state) sits on a 160 MB filesystem
# of its own (tmpfs); min_free_mb = 60 on both nodes; mail flows all along
# (20 msg/s to main, then backup, like MX).
#   1. `mailtwin status` on main shows both nodes (its own view and what
#      backup said of itself over the link).
#   2. A file fills main's disk to 30 MB free: main says so (queue-trouble),
#      waits 10 s, then hands the role to backup by a switchover, because
#      backup reports a healthy disk.
#   3. main, the preferred node with automatic failback (3 s), is in sync
#      but says its disk is in trouble: backup does not fail back to it.
#   4. The file is removed: backup fails back to main.
#   5. Nothing lost, nothing delivered twice.
. "$(dirname "$0")/../lib.sh"

export MT_PREFERRED=main MT_FAILBACK=auto MT_FAILBACK_DELAY=3s
pair_setup t-11
for h in main backup; do
	sed -i '/^\[failover\]/a min_free_mb = 60' "$LAB_DIR/$h/mailtwin.toml"
done
lab_tmpfs "$LAB_DIR/main" 160m
mt_gate main
mt_gate backup
pair_start
start_sender 20 "a@sink.lab.test,b@sink.lab.test"

# 1. Both nodes in one table.
peer_heard() { grep -q "backup (said" <<<"$(mt main status)"; }
lab_wait_for 5 peer_heard || fail "main's status does not show backup: $(mt main status | head -8)"
st=$(mt main status)
grep -Eq '^role +primary at epoch 1 +standby at epoch 1' <<<"$st" || fail "status: roles: $(grep ^role <<<"$st")"
grep -Eq '^postfix +running +stopped' <<<"$st" || fail "status: postfix: $(grep ^postfix <<<"$st")"
grep -Eq '^disk +[0-9]+ MB free +[0-9]+ MB free' <<<"$st" || fail "status: disk: $(grep ^disk <<<"$st")"
echo "1. main's status shows both nodes:"
sed -n '1,6p' <<<"$st" | sed 's/^/   /'

# 2. main's disk fills up.
free_mb() { df -m --output=avail "$LAB_DIR/main" | tail -1 | tr -d ' '; }
dd if=/dev/zero of="$LAB_DIR/main/filler" bs=1M count=$(($(free_mb) - 30)) status=none ||
	fail "could not fill main's disk"
echo "2. main's disk filled: $(free_mb) MB free (min_free_mb 60)"
decision_has() { grep -q "$2" <<<"$(mt_ha "$1" decision)"; }
lab_wait_for 10 decision_has main "the role moves to backup if this lasts 10 s" ||
	fail "main does not plan to hand the role over: $(mt_ha main decision)"
echo "   main: $(mt_ha main decision)"
t=$EPOCHREALTIME
lab_wait_for 25 mt_role_is backup primary 2 || fail "backup did not take the role: main says $(mt_ha main decision)"
lab_wait_for 10 mt_role_is main standby 2 || fail "main is not standby at epoch 2"
echo "   backup is primary after $(python3 -c "print(f'{$EPOCHREALTIME - $t:.1f}')") s;" \
	"$(grep -ho 'EVENT #[0-9]* switchover: .*' "$LAB_DIR/main/mailtwind.log" | head -1 | cut -c1-150)"
n=$(mt main events | grep -c " queue-trouble ") || true
((n == 1)) || fail "$n queue-trouble events on main, want 1"

# 3. No failback while main's disk is full.
mt_wait_state backup live 20 || fail "backup does not replicate to main"
sleep 8
mt_role_is backup primary 2 || fail "backup handed the role back to a node whose disk is full"
decision_has backup "no failback to main: its queue's filesystem is in trouble" ||
	fail "backup's decision does not say why it keeps the role: $(mt_ha backup decision)"
echo "3. main is in sync but its disk is full: $(mt_ha backup decision)"

# 4. Healthy again: failback.
rm -f "$LAB_DIR/main/filler"
lab_wait_for 30 mt_role_is main primary 3 || fail "no failback once main's disk was freed: $(mt_ha backup decision)"
echo "4. main's disk freed ($(free_mb) MB free): failback to main at epoch 3"

# 5. Nothing lost, nothing twice.
settle_and_account main "$log" "$SINK_OK"
echo "5. $TOTAL messages answered 250: $LOST lost, $DUPS delivered twice"
((LOST == 0)) || fail "$LOST accepted messages were lost"
((DUPS == 0)) || fail "$DUPS messages were delivered twice"
pass
