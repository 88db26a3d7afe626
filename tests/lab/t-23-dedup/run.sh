#!/bin/bash
#
# t-23-dedup: no duplicate from a lost 250 (issue 15). A real sending
# Postfix (host sender) finds the pair by MX at the lab's DNS server (main
# 10, backup 20) and delivers RATE messages a second. The serving primary is
# killed -9 (every process of its host) at a random moment, KILLS times (3
# here; bench/run mx does more); after each kill the other node takes over
# and the killed one comes back as standby, so the next kill hits the new
# primary. A message whose data the dying primary had queued (and
# replicated) but whose 250 never reached the sender is sent again, to the
# other MX: the new primary must answer it 250 without queueing it again
# (docs/gate.md, "Duplicates after a failover").
# The window this test is about is the time between the commit and the
# 250 reaching the sender: with the lab's sub-millisecond link and a sink
# that takes each message at once (the gate releases the reply of a message
# delivered before its acknowledgement), a kill rarely lands in it (none of
# three kills did, twice in a row), and the test could not fail. So, as in
# t-14, half the mail is for slow.lab.test (its server answers DATA after
# 1 s: the message stays queued), and the standby's packets are delayed
# ACK_DELAY_MS (40 ms, lab_netem: a link between two sites): each 250 then
# waits about that long for the standby's acknowledgement.
#   1. the stream goes through main;
#   2. each kill: the other node takes over at the next epoch; the killed
#      node rejoins as standby;
#   3. the sender's queue empties;
#   4. by Message-ID at the sink: lost = 0, and no message is delivered
#      twice because of a lost 250 whose fingerprint the new primary had
#      (dup_lost250 minus those in the gap = 0; the gap: no fingerprint of
#      either copy reached a dedup table. Since the gate's tokens the window
#      that made most of them is closed, and t-27 checks it on purpose; what
#      can still land there, a link reconnect between the token frame and
#      the file, or a rejoin's handover of a message whose token frame was
#      lost too, is reported, not judged). Any other duplicate is listed
#      with its source (dup_sources: in flight at the destination, or a done
#      mark that never reached the standby), reported, not judged here. How many 250s the kills cut, and how many resends
#      the new primaries answered without queueing, is reported.
. "$(dirname "$0")/../lib.sh"

KILLS=${KILLS:-3}
RATE=${RATE:-20}
ACK_DELAY_MS=${ACK_DELAY_MS:-40}
export SLOW_SECONDS=1
SEED=${SEED:-$RANDOM}
echo "   (kills at random moments: SEED=$SEED)"
RANDOM=$SEED

pair_setup t-23
mx_setup "${MX_FAST_RETRY[@]}"
mt_gate main
mt_gate backup
pair_start

# 1. The stream.
lab_netem backup "$ACK_DELAY_MS" 0 0
start_sender "$RATE" "a@sink.lab.test,b@slow.lab.test" 127.0.0.1 sender
sleep 4
MX_RELAYED=$(lab_mx_relayed sender)
[[ $MX_RELAYED =~ ^via_main=[0-9]+$ ]] || fail "the sender did not deliver through main only: '$MX_RELAYED'"
hold=$("$MAILTWIN_BIN/mailtwin" --socket "$LAB_DIR/main/mailtwin/control.sock" status --json |
	python3 -c 'import json, sys; j = json.load(sys.stdin); g = j["gate"]; r = j["replication"]; print("held each 250 p50 %.1f ms, p99 %.1f ms; done marks reached backup p50 %.1f ms, p99 %.1f ms" % (g["hold_p50_ms"], g["hold_p99_ms"], r["done_lag_p50_ms"], r["done_lag_p99_ms"]))')
echo "1. the sender found main by MX and delivered through it: $MX_RELAYED; main's gate $hold"

# 2. Kill the serving primary KILLS times, each at a random moment.
primary=main standby=backup epoch=1
for ((k = 1; k <= KILLS; k++)); do
	pause=$((1000 + RANDOM % 2000))
	sleep "$((pause / 1000)).$(printf '%03d' $((pause % 1000)))"
	lab_crash "$primary"
	epoch=$((epoch + 1))
	took_over() { mt_role_is "$standby" primary "$epoch"; }
	lab_wait_for 20 took_over || fail "kill $k: $standby did not take over: $(mt "$standby" status 2>&1 | head -5)"
	lab_netem_off "$standby"
	mt_start "$primary" >/dev/null || fail "kill $k: mailtwind on $primary did not restart"
	lab_wait_for 30 _mt_state_is "$standby" live || fail "kill $k: $primary did not rejoin as standby"
	lab_wait_for 30 mt_handover_done "$primary" || fail "kill $k: $primary's set-aside queue was not settled"
	lab_netem "$primary" "$ACK_DELAY_MS" 0 0
	echo "2.$k killed $primary ${pause} ms into the stream; $standby is primary at epoch $epoch, $primary follows"
	tmp=$primary primary=$standby standby=$tmp
done

# 3. Stop the stream; the sender's queue empties by its own retries.
touch "$LAB_DIR/stop"
lab_wait_for 60 lab_postfix_empty sender ||
	fail "the sender still holds $(lab_postfix_queued sender) messages: $(lab_pf sender postqueue -p | tail -n 4)"
echo "3. the sender's queue is empty"

# 4. The mail, by Message-ID at the sink, and where each duplicate came from.
settle "$primary"
lab_mx_account "$log" sender "$SINK_OK" "$SINK_SLOW" >/dev/null
dup_sources sender "$SINK_OK" "$SINK_SLOW"
answered=$(cat "$LAB_DIR"/{main,backup}/mailtwind.log | grep -c "gate: duplicate of" || true)
cut250=$(grep -Ec "message may be sent more than once|said: 4[0-9][0-9] .*in reply to end of DATA command" "$LAB_DIR/sender/maillog" || true)
imported=$(cat "$LAB_DIR"/{main,backup}/mailtwind.log | grep -c "imported into this primary" || true)
echo "4. $MX_ACCOUNT dup_lost250=$DUP_LOST250 (in the gap: $DUP_LOST250_GAP) dup_other=$DUP_OTHER (in flight: $DUP_INFLIGHT, done-mark lag: $DUP_DONE_LAG) dedup_answered=$answered cut_250s=$cut250 handed_over=$imported"
if [[ -s $LAB_DIR/dup_sources ]]; then sed "s/^/   duplicate: /" "$LAB_DIR/dup_sources"; fi
{ grep -h "gate: duplicate of" "$LAB_DIR"/{main,backup}/mailtwind.log || true; } | sed "s/^.*gate: /   /" | head -10
((LOST == 0)) || fail "$LOST accepted messages were lost: $(head -3 "$LAB_DIR/lost" | tr '\n' ' ')"
# A lost-250 duplicate whose fingerprint never reached the standby is the
# open gap of issue 15 (dup_sources says so): reported, not judged. One
# whose fingerprint was in a dedup table is a failure of dedup itself.
((DUP_LOST250 - DUP_LOST250_GAP == 0)) ||
	fail "$((DUP_LOST250 - DUP_LOST250_GAP)) messages whose 250 was lost in a failover, and whose fingerprint the new primary had, were delivered twice"
((DUP_LOST250_GAP == 0)) || echo "   $DUP_LOST250_GAP duplicate(s) from a lost 250 in the known gap: the node died before its gate read the queue ID, no fingerprint was sent (issue 15, open)"
pass
