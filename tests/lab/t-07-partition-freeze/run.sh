#!/bin/bash
#
# t-07-partition-freeze: split brain merges instead of discarding, and a
# frozen primary fences itself when it wakes.
#   A. Partition: backup is cut off from main for 30 s while the client
#      keeps sending to main. Backup takes over (epoch 2) on its side; main
#      keeps serving on its own: both are primary. Half the mail is for a
#      destination that is down, so main's queue holds mail backup never saw.
#      The link comes back: main meets a newer epoch, fences itself, steps
#      down, and hands over the messages only it had; backup imports them.
#   B. Freeze: backup (now primary) is frozen (SIGSTOP, every process) for
#      6 s. Main takes over (epoch 3). Backup wakes: its daemon sees it was
#      stalled, fences Postfix at once, learns epoch 3, steps down, hands over.
#   C. Freeze with the peer dead: backup's host dies, then main (primary) is
#      frozen for 3 s. Main fences itself at the thaw; no peer dials in and
#      backup's SMTP refuses: nobody took over, so main confirms its epoch
#      again and serves.
#   Then the down destination comes back, and every message the client got a
#   250 for is delivered: none lost. In A nothing can be delivered twice (the
#   only mail both had waits for the down destination); in B the thawed
#   Postfix may finish a delivery in the instant before the fence - counted
#   and reported.
. "$(dirname "$0")/../lib.sh"

pair_setup t-07
mt_gate main
mt_gate backup
pair_start
start_sender 30 "a@sink.lab.test,d@dead.lab.test"
sleep 3

# A. Partition: backup drops everything from and to main (its interface stays
# up, as in a real network split).
partition() {  # partition on|off
	if [[ $1 == on ]]; then
		lab_exec backup nft -f - <<-EOT
			table inet t07 {
			  chain in { type filter hook input priority 0; ip saddr $(lab_ip main) drop; }
			  chain out { type filter hook output priority 0; ip daddr $(lab_ip main) drop; }
			}
		EOT
	else
		lab_exec backup nft delete table inet t07
	fi
}
partition on
t_part=$SECONDS
lab_wait_for 15 mt_role_is backup primary 2 || fail "backup did not take over during the partition"
[[ $(mt_status main role) == primary ]] || fail "main stopped serving although only backup was cut off"
sleep $((30 - (SECONDS - t_part)))  # a 30 s partition in all
during=$(awk -v ip="$(lab_ip main)" '$4 == ip' "$log" | wc -l)
t_heal=$((SECONDS - t_part))
partition off
lab_wait_for 20 mt_role_is main standby 2 || fail "main did not step down after the partition: $(mt main status)"
lab_wait_for 30 mt_handover_done main || fail "main did not settle its set-aside queue: $(mt_ha main handover_pending) left"
summary=$(grep -o 'handover to the primary: [^(]*' "$LAB_DIR/main/mailtwind.log" | tail -1)
imported=$(sed -n 's/^handover to the primary: \([0-9]*\) messages only.*/\1/p' <<<"$summary")
echo "A. partition of $t_heal s: both served (backup at epoch 2, main alone: $during messages accepted so far); after the heal main stepped down; $summary"
((${imported:-0} > 0)) || fail "main handed nothing over, yet it accepted mail for the down destination during the partition"

# B. Freeze the primary (backup).
mt_wait_state backup live 20 || fail "backup does not replicate to main"
sleep 2
lab_freeze backup
lab_wait_for 15 mt_role_is main primary 3 || { lab_thaw backup; fail "main did not take over from the frozen backup"; }
sleep 2
lab_thaw backup
lab_wait_for 20 mt_role_is backup standby 3 || fail "the thawed backup did not step down: $(mt backup status)"
grep -q "stalled for" "$LAB_DIR/backup/mailtwind.log" || fail "the thawed backup did not notice its stall"
lab_postfix_running backup && fail "the thawed backup's Postfix still runs"
lab_wait_for 30 mt_handover_done backup || fail "backup did not settle its set-aside queue"
echo "B. freeze: main took over at epoch 3; the thawed backup fenced itself ($(grep -ho 'this daemon stalled for [0-9]* ms' "$LAB_DIR/backup/mailtwind.log" | head -1)) and stepped down"

# C. The primary (main) freezes while its peer is dead: backup's host dies,
# then main is frozen for 3 s. Main wakes, sees its stall and fences; but no
# peer dials in and backup's SMTP refuses, so nobody took over: main must
# confirm its own epoch again and serve (before, it waited for a peer that
# never came: the mail stopped until an administrator ran promote --force).
mt_wait_state main live 20 || fail "main does not replicate to backup"
lab_crash backup
sleep 1
lab_freeze main
sleep 3
t_thaw=$EPOCHREALTIME
lab_thaw main
serving() { [[ $(mt_ha main epoch_confirmed) == True ]] && lab_postfix_running main; }
lab_wait_for 30 serving || fail "main stayed fenced after its stall with backup dead: $(mt_ha main decision)"
resumed=$(awk -v a="$t_thaw" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
grep -q "did not take over; epoch 3 is confirmed again" "$LAB_DIR/main/mailtwind.log" ||
	fail "main serves again, but not after judging its peer down: $(grep -c 'decide:' "$LAB_DIR/main/mailtwind.log")"
before=$(wc -l <"$log")
lab_wait_for 10 eval '(($(wc -l <"$log") > before))' || fail "main serves again, but the client gets no 250"
echo "C. frozen with its peer dead: main fenced ($(grep -ho 'this daemon stalled for [0-9]* ms' "$LAB_DIR/main/mailtwind.log" | tail -1)), found backup down, and served again $resumed s after the thaw"

# Everything accepted is delivered.
lab_sink_start dest 2526 "$SINK_DEAD" >/dev/null
lab_pf main postqueue -f >/dev/null 2>&1 || true
settle_and_account main "$log" "$SINK_OK" "$SINK_DEAD"
echo "$TOTAL messages answered 250: $LOST lost, $DUPS delivered twice"
((LOST == 0)) || fail "$LOST accepted messages were lost: $(head -3 "$LAB_DIR/lost" | tr '\n' ' ')"
pass
