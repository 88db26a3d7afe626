#!/bin/bash
#
# t-16-standby-disk-full: the standby's disk is full, so every session ends
# in an apply error right after the catch-up; the primary backs off (with
# jitter) instead of reconnecting, and sending a full manifest, several
# times a second. Once the disk has room, the mirror converges.
#   1. backup's directory (queue, mirror) on a 24 MB filesystem, filled up;
#      a message on main cannot be mirrored: backup says why (Error 5), and
#      main's log names backup's address and the reason;
#   2. over 12 s, main reconnects at most 10 times (back-off doubling to 5 s;
#      without it, about every 0.2 s);
#   3. the disk freed: the mirror converges.
. "$(dirname "$0")/../lib.sh"
export MT_FAILOVER=manual

pair_setup t-16
lab_tmpfs "$LAB_DIR/backup" 24m
pair_start

# 1. Fill backup's disk, then queue a message on main.
free_mb() { df -m --output=avail "$LAB_DIR/backup" | tail -1 | tr -d ' '; }
dd if=/dev/zero of="$LAB_DIR/backup/filler" bs=1M count=64 status=none 2>/dev/null || true
dd if=/dev/zero of="$LAB_DIR/backup/filler2" bs=4k count=100000 status=none 2>/dev/null || true
echo "1. backup's disk filled: $(free_mb) MB free"
lab_exec client swaks --server "$(lab_ip main):25" --helo client.lab.test --from s@client.lab.test \
	--to big@dead.lab.test --attach-type text/plain --attach @<(head -c 300000 /dev/urandom | base64) \
	>/dev/null 2>&1 || fail "main did not accept the message"
apply_failed() { grep -q "standby refused: .*No space left on device" "$LAB_DIR/main/mailtwind.log"; }
lab_wait_for 20 apply_failed || fail "backup did not refuse the change for lack of space"
line=$(grep -m1 "link to $(lab_ip backup):$MT_PORT lost: standby refused" "$LAB_DIR/main/mailtwind.log") ||
	fail "main's log does not name backup's address and the reason"
echo "   main: ${line#* warning }" | cut -c1-200

# 2. Count main's reconnections (each one a manifest exchange) over 12 s.
manifests() { grep -c "replication: standby holds" "$LAB_DIR/main/mailtwind.log" || true; }
before=$(manifests)
sleep 12
n=$(($(manifests) - before))
((n <= 10)) || fail "main reconnected $n times in 12 s with the standby's disk full: no back-off"
echo "2. main reconnected $n times in 12 s (backing off)"

# 3. Room again: the mirror converges.
rm -f "$LAB_DIR/backup/filler" "$LAB_DIR/backup/filler2"
mt_wait_synced main backup 30 || fail "mirror did not converge once the disk had room"
echo "3. disk freed ($(free_mb) MB): the mirror converged"

pass
