#!/bin/bash
#
# t-06-failover: automatic failover and fencing, with real Postfix under load,
# checked at the destination by unique Message-IDs.
#   1. main dies (every process of its host, kill -9) while a client sends;
#      backup finds it down by itself (SMTP probes + replication link), takes
#      over at epoch 2 and accepts mail: time to accept again is measured;
#   2. main comes back (its mailtwind restarts, believing it is primary at
#      epoch 1): it must not start Postfix; it learns epoch 2 from backup,
#      steps down, sets its old queue aside and follows as standby;
#   3. every message answered 250 (by main or by backup) is delivered; none
#      is lost (duplicates are counted and reported);
#   4. events: each node's hook ran exactly once per event, and the
#      administrator's mailbox holds exactly one mail per event of backup.
. "$(dirname "$0")/../lib.sh"

hook=$REPO/tests/lab/t-06-failover/hook.sh
export MT_HOOK=$hook MT_MAIL_TO=admin@sink.lab.test MT_METRICS_PORT=9725
pair_setup t-06
export HOOK_DIR=$LAB_DIR  # the daemons inherit it: where hook.sh writes
mt_gate main
mt_gate backup
pair_start

start_sender 40 "a@sink.lab.test,b@sink.lab.test"
sleep 4

# 1. main dies.
before=$(wc -l <"$log")
t0=$EPOCHREALTIME
lab_crash main
backup_serves() { lab_exec client python3 -c '
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], 25, timeout=1); s.ehlo("t06"); s.quit()' "$(lab_ip backup)" 2>/dev/null; }
lab_wait_for 20 backup_serves || fail "backup does not accept mail 20 s after main died"
t1=$EPOCHREALTIME
rto=$(python3 -c "print(f'{$t1 - $t0:.2f}')")
[[ $(mt_status backup role) == primary ]] || fail "backup serves SMTP but is not primary"
[[ $(mt_status backup epoch) == 2 ]] || fail "backup's epoch is $(mt_status backup epoch), want 2"
echo "1. main killed after $before accepted messages; backup accepts mail again after $rto s"
# Prometheus sees it too (from the client host, over HTTP).
metrics=$(lab_exec client python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(f"http://{sys.argv[1]}:9725/metrics", timeout=5).read().decode())' "$(lab_ip backup)") ||
	fail "no metrics from backup"
grep -q '^mailtwin_role_info{node="backup",cluster="lab",value="primary"} 1$' <<<"$metrics" ||
	fail "metrics do not say backup is primary: $(grep role <<<"$metrics")"
grep -q '^mailtwin_epoch{node="backup",cluster="lab"} 2$' <<<"$metrics" || fail "metrics: epoch is not 2"
echo "   metrics: $(grep -c '^mailtwin_' <<<"$metrics") series, e.g. $(grep '^mailtwin_ha_probe_failures' <<<"$metrics")"
grep -m1 -h "decide: primary down" "$LAB_DIR/backup/mailtwind.log" | sed 's/^.*decide: /   backup decided: /'
grep -ho "promote: this node is the primary now.*" "$LAB_DIR/backup/mailtwind.log" | sed 's/^/   /'
# Its own promotion (a second of blocking work) must not look like a freeze.
! grep -q "stalled for" "$LAB_DIR/backup/mailtwind.log" || fail "backup fenced itself: $(grep -h 'stalled for' "$LAB_DIR/backup/mailtwind.log" | head -1)"
# With no standby yet, the new primary's gate has no replica to wait for:
# it answers at once instead of holding each client for sync_timeout (1 s).
[[ $(mt_status backup no_standby_since_takeover) == True ]] ||
	fail "backup's status does not say it has had no standby since the take-over"
took=$(lab_exec client python3 -c '
import smtplib, sys, time
s = smtplib.SMTP(sys.argv[1], 25, timeout=10); s.ehlo("t06")
t = time.monotonic()
s.sendmail("a@client.lab.test", ["a@sink.lab.test"], "Message-ID: <t06-no-standby@client.lab.test>\r\nSubject: t-06 no standby\r\n\r\nx\r\n")
print(f"{time.monotonic() - t:.3f}"); s.quit()' "$(lab_ip backup)") || fail "backup refused a message after the take-over"
echo "   with no standby yet, a message took $took s from MAIL to 250 (sync_timeout 1 s)"
python3 -c "import sys; sys.exit(0 if $took < 0.8 else 1)" ||
	fail "backup held a client ${took} s for a replica that cannot exist (no standby since the take-over)"
sleep 3

# 2. main comes back: fenced until it knows the epoch, then a standby.
mt_start main >/dev/null || fail "mailtwind on main did not restart"
stepped() { [[ $(mt_status main role) == standby && $(mt_status main epoch) == 2 ]]; }
lab_wait_for 20 stepped || fail "main did not step down to standby at epoch 2: $(mt main status)"
lab_postfix_running main && fail "main started Postfix although a newer primary exists"
grep -q "started Postfix" "$LAB_DIR/main/mailtwind.log" && fail "main's mailtwind started Postfix"
mt_wait_state backup live 30 || fail "backup does not replicate to main after its return"
lab_wait_for 20 mt_handover_done main || fail "main's set-aside queue was not settled with backup: $(mt_ha main handover_pending) left"
echo "2. main is back as standby at epoch 2 (Postfix not started); its old queue settled with backup ($(grep -o 'handover to the primary: [^(]*' "$LAB_DIR/main/mailtwind.log" | tail -1 || echo "it held nothing"))"

# 3. The mail.
settle_and_account backup "$log" "$SINK_OK"
echo "3. $TOTAL messages answered 250: $LOST lost, $DUPS delivered twice"
((TOTAL > before)) || fail "backup accepted no mail after the failover"
((LOST == 0)) || fail "$LOST accepted messages were lost: $(head -3 "$LAB_DIR/lost" | tr '\n' ' ')"

# 4. Events.
kinds() { awk '{print $2}' "$LAB_DIR/$1.hook" 2>/dev/null | sort | uniq -c | awk '{print $2 "=" $1}' | tr '\n' ' '; }
echo "4. hook calls: backup: $(kinds backup); main: $(kinds main)"
for k in primary-lost promotion; do
	n=$(awk -v k="$k" '$2 == k' "$LAB_DIR/backup.hook" | wc -l)
	((n == 1)) || fail "backup's hook ran $n times for $k, want 1"
done
n=$(awk '$2 == "fencing"' "$LAB_DIR/main.hook" 2>/dev/null | wc -l)
((n == 1)) || fail "main's hook ran $n times for fencing, want 1"
# The administrator's mailbox: one mail per event of backup, by Message-ID.
mails() { lab_sink_rcpts "$SINK_OK" | awk '$2 == "admin@sink.lab.test" {print $1}' | sort; }
want_mails() { (($(mails | wc -l) >= 2)); }
lab_wait_for 20 want_mails || fail "the administrator got $(mails | wc -l) mails, want 2"
sleep 1
[[ -z $(mails | uniq -d) ]] || fail "a notification mail arrived twice: $(mails | uniq -d)"
for k in primary-lost promotion; do
	seq=$(awk -v k="$k" '$2 == k {print $1}' "$LAB_DIR/backup.hook")
	grep -qx "$seq.backup.lab@mailtwin" <<<"$(mails)" || fail "no mail for backup's $k event (#$seq): $(mails)"
done
echo "   administrator's mailbox: $(mails | tr '\n' ' ')"
pass
