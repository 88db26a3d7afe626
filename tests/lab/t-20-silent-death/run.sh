#!/bin/bash
#
# t-20-silent-death: a primary that dies silently is replaced; a primary that
# is merely slow is not. With the product's default timings
# (heartbeat_interval 100 ms, peer_timeout 1.2 s, check_interval 250 ms,
# fail_threshold 3, probe_timeout 700 ms) and real Postfix under load,
# checked at the destination by Message-ID.
#   A. Slow: main's Postfix greets every client 2 s late (Postfix's `sleep`
#      restriction at connect) for about 5 s while mail flows. Every probe of
#      backup's fails, overlapping ones pile up past the link-alive threshold
#      (12), but the link is alive: backup must stay standby. Counted one at
#      a time, as a single probe would, they stay below it.
#   B. Silent death: main's power is cut (lab_silence: its cable is cut, no
#      RST, no ICMP; every process frozen, never thawed). Backup must find
#      out by itself (link silent for peer_timeout AND three overlapping
#      probes timed out), take over at epoch 2 and accept mail; the time is
#      printed (bench/run failover measures it against its target).
#   Every message answered 250 (by main or backup) reaches the sink: none
#   lost. Duplicates are counted and reported: a delivery main had under way
#   at its death may have reached the sink with its 250 never read.
. "$(dirname "$0")/../lib.sh"

# The product's defaults (the lab's own are longer: lab/mailtwin.sh).
export MT_HEARTBEAT=100ms MT_PEER_TIMEOUT=1200ms MT_CHECK_INTERVAL=250ms MT_FAIL_THRESHOLD=3 \
	MT_PROBE_TIMEOUT=700ms
pair_setup t-20
mt_gate main
mt_gate backup
pair_start
start_sender 30 "a@sink.lab.test,b@sink.lab.test"
sleep 3

# A. A slow primary.
failing() { (($(mt_ha backup probe_failures) >= $1)); }
lab_postfix_slow_greeting main 2
lab_wait_for 10 failing 1 || fail "backup's probes did not notice main's 2 s greeting: $(mt backup status)"
# 5 s of failing probes: a single probe at a time would count about 7
# failures (one per 0.75 s), overlapping ones about 18.
peak=0 peak_serial=0 until=$((${EPOCHREALTIME/./} + 5000000))
while ((${EPOCHREALTIME/./} < until)); do
	n=$(mt_ha backup probe_failures) s=$(mt_ha backup probe_serial_failures)
	if ((n > peak)); then peak=$n; fi
	if ((s > peak_serial)); then peak_serial=$s; fi
	sleep 0.2
done
lab_postfix_slow_greeting main off
[[ $(mt_status backup role) == standby && $(mt_status main role) == primary ]] ||
	fail "backup took over from a primary that was only slow: $(grep -h 'decide: primary' "$LAB_DIR/backup/mailtwind.log" | head -2)"
echo "A. main greeted 2 s late for 5 s: backup's probes failed ($peak overlapping, $peak_serial one after another; link-alive threshold 12); its link kept it standby"
((peak >= 12)) || fail "only $peak overlapping probes failed: the slow phase did not test the link-alive threshold"
answers() { [[ $(mt_ha backup probe_failures) == 0 ]]; }
lab_wait_for 15 answers || fail "backup's probes still fail after main's greeting is fast again"
mt_wait_state main live 10 || fail "main does not replicate after its slow phase"
sleep 2

# B. Silent death.
before=$(wc -l <"$log")
t0=$EPOCHREALTIME
lab_silence main
t_ok=$(lab_exec client python3 "$REPO/lab/smtp_wait.py" "$(lab_ip backup)" 25 30) ||
	fail "backup does not accept mail 30 s after main died silently"
rto=$(python3 -c "print(f'{$t_ok - $t0:.2f}')")
mt_role_is backup primary 2 || fail "backup answers SMTP but is not primary at epoch 2: $(mt backup status)"
echo "B. main silenced after $before accepted messages; backup accepts mail again after $rto s"
grep -m1 -h "decide: primary down" "$LAB_DIR/backup/mailtwind.log" | sed 's/^.*decide: /   backup decided: /'
grep -q "decide: primary down: [0-9]* consecutive SMTP probe failures ([^)]*no answer within 700 ms" "$LAB_DIR/backup/mailtwind.log" ||
	fail "backup's decision does not name hung probes (a silent death refuses nothing)"
sleep 5  # mail flows to backup alone

settle_and_account backup "$log" "$SINK_OK"
echo "$TOTAL messages answered 250: $LOST lost, $DUPS delivered twice"
((TOTAL > before)) || fail "backup accepted no mail after the failover"
((LOST == 0)) || fail "$LOST accepted messages were lost: $(head -3 "$LAB_DIR/lost" | tr '\n' ' ')"
pass
