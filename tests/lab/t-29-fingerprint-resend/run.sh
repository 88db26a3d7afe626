#!/bin/bash
#
# t-29-fingerprint-resend: a message is queued while the replication link is
# down (its connection cut by a firewall on main, SMTP still open, so backup
# does not take over); the link comes back, and the catch-up sends the
# queue file. The fingerprint the gate took of the message could not go when
# it was queued: the primary keeps the fingerprints of the last
# `dedup_window` and sends them again to the standby of every new session
# (docs/gate.md, "Duplicates after a failover"). So when main dies and its
# sender, unsure of its first 250, sends the message again to backup, the
# new primary answers 250 without queueing it a second time.
#   1. main's link to backup is cut (tcp port 7525 only); main says so;
#   2. a client sends one message to main: answered 250 after sync_timeout
#      (no standby to wait for); main's Postfix keeps it queued
#      (defer_transports), as a message still in the queue at a crash;
#   3. the cut is healed: the link comes back and backup has the queue file
#      and the message's fingerprint again;
#   4. main is killed -9; backup takes over with the message in its dedup
#      table;
#   5. the same message sent to backup is answered 250 and not queued again:
#      the destination has it once (by Message-ID).
# Without the resend of recent fingerprints (checked once by disabling it),
# backup has no fingerprint after the catch-up (step 3 fails), and without
# that check the take-over enters nothing and backup's gate does not
# recognise the resend (step 5 fails): it would be queued a second time.
. "$(dirname "$0")/../lib.sh"

pair_setup t-29
mt_gate main
mt_gate backup
lab_postconf main -e "defer_transports = smtp"
pair_start

# The one message (lab/send_once.py: always the same bytes).
MESSAGE=(t29-resend@client.lab.test t-29 "queued while the link was down")

# 1. Only the link's port: backup still reaches main's SMTP.
lab_cut_port main t29 "$MT_PORT"
link_down() { [[ $(mt_status main state) != live ]]; }
lab_wait_for 15 link_down || fail "main's link stayed live with its port cut"
echo "1. main's link to backup cut: main's link is $(mt_status main state)"

# 2.
lab_exec client python3 "$REPO/lab/send_once.py" "$(lab_ip main)" "$LAB_DIR/first" "${MESSAGE[@]}"
[[ $(cat "$LAB_DIR/first") == 250 ]] || fail "main did not answer 250: $(cat "$LAB_DIR/first")"
id=$(maillog_queue_id main "${MESSAGE[0]}")
[[ -n $id ]] || fail "main's maillog names no queued message"
mt_role_is backup standby 1 || fail "backup took over while main's SMTP was up: $(mt backup status)"
echo "2. main queued the message as $id and answered 250 without a standby;" \
	"backup holds $(mt_json backup dedup.recent_fingerprints) fingerprints"

# 3.
lab_heal main t29 || fail "could not heal the cut"
mt_wait_state main live 30 || fail "the link did not come back: $(mt main status)"
has_file() { [[ -n $(find "$LAB_DIR/backup/mirror" -type f -name "$id" 2>/dev/null) ]]; }
lab_wait_for 10 has_file || fail "backup's mirror has no $id after the catch-up"
has_fp() { (($(mt_json backup dedup.recent_fingerprints) >= 1)); }
lab_wait_for 5 has_fp ||
	fail "backup has no fingerprint of $id after the link came back: $(mt_json backup dedup)"
grep -q "dedup: sent standby .* again the fingerprints of the 1 messages" "$LAB_DIR/main/mailtwind.log" ||
	fail "main did not log that it sent the fingerprint again"
echo "3. the link is back: backup has $id and $(mt_json backup dedup.recent_fingerprints) fingerprint(s)"

# 4.
lab_crash main
lab_wait_for 20 mt_role_is backup primary 2 || fail "backup did not take over: $(mt backup status)"
blog=$LAB_DIR/backup/mailtwind.log
grep -q "dedup: [1-9][0-9]* messages the old primary accepted" "$blog" ||
	fail "backup's dedup table got nothing at the take-over: $(grep dedup "$blog")"
echo "4. main killed -9; backup took over: $(grep -o "dedup: [0-9]* messages the old primary accepted" "$blog" | head -1)"

# 5.
lab_wait_port client "$(lab_ip backup)" 25 || fail "backup does not listen on port 25"
lab_exec client python3 "$REPO/lab/send_once.py" "$(lab_ip backup)" "$LAB_DIR/second" "${MESSAGE[@]}"
[[ $(cat "$LAB_DIR/second") == 250 ]] || fail "the resend to backup was not answered 250: $(cat "$LAB_DIR/second")"
dup=$(grep -h "gate: duplicate of" "$blog" | head -1 || true)
[[ -n $dup ]] || fail "backup's gate did not recognise the resend"
expect_one_copy backup "${MESSAGE[0]}"
echo "5. the resend was answered 250:${dup#*gate:}; the destination has the message once"
pass
