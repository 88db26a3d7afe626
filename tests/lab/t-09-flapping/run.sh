#!/bin/bash
#
# t-09-flapping: no ping-pong.
#   A. Main's Postfix dies three times, 2 s apart (its master and every
#      child, kill -9), while main's mailtwind lives: main restarts its own
#      Postfix each time; backup, which sees the link alive, never takes over.
#   B. Main's whole host dies, and then flaps: three times it comes back,
#      rejoins as standby, and dies again 2 s later - before failback_delay
#      (6 s here, failback = auto to main). Backup stays primary at epoch 2
#      throughout: no failback to a node that is not stable. When main comes
#      back for good, exactly one failback follows (epoch 3).
#   Every message the client got a 250 for is delivered.
. "$(dirname "$0")/../lib.sh"

export MT_PREFERRED=main MT_FAILBACK=auto MT_FAILBACK_DELAY=6s
pair_setup t-09
# Main watches its queue's filesystem with a threshold it cannot meet: it
# must say so (decision, one queue-trouble event) and keep serving.
sed -i '/^\[failover\]/a min_free_mb = 100000000' "$LAB_DIR/main/mailtwin.toml"
mt_gate main
mt_gate backup
pair_start
start_sender 20 "a@sink.lab.test,b@sink.lab.test"
takeovers() { cat "$LAB_DIR"/{main,backup}/mailtwind.log | grep -c " warning taking over at epoch" || true; }

decision_has() { grep -q "$1" <<<"$(mt_ha main decision)"; }
lab_wait_for 10 decision_has "MB free (min_free_mb 100000000)" || fail "main does not report its queue's free space: $(mt_ha main decision)"
n=$(mt main events | grep -c " queue-trouble ") || true
((n == 1)) || fail "$n queue-trouble events, want 1"
echo "0. main reports: $(mt_ha main decision)"

# A. Postfix flaps, mailtwind lives.
for i in 1 2 3; do
	sleep 2
	lab_postfix_kill main
	lab_wait_for 10 lab_postfix_running main || fail "main's mailtwind did not restart its Postfix ($i)"
done
sleep 2
(($(takeovers) == 0)) || fail "backup took over while main's daemon restarted its Postfix"
mt_role_is main primary 1 || fail "main is not primary at epoch 1 any more"
echo "A. main's Postfix killed 3 times: restarted by main's mailtwind each time ($(grep -c 'started Postfix' "$LAB_DIR/main/mailtwind.log") starts), no takeover"

# B. The host flaps.
lab_crash main
lab_wait_for 15 mt_role_is backup primary 2 || fail "backup did not take over"
for i in 1 2 3; do
	mt_start main >/dev/null || fail "mailtwind on main did not restart ($i)"
	lab_wait_for 20 mt_role_is main standby 2 || fail "main did not rejoin ($i)"
	mt_wait_state backup live 20 || fail "backup does not replicate to main ($i)"
	sleep 2
	mt_role_is backup primary 2 || fail "the role moved to main although it was back for only 2 s ($i)"
	lab_crash main
	sleep 1
done
(($(takeovers) == 1)) || fail "$(takeovers) takeovers while main flapped, want 1"
echo "B. main came back and died 3 times: backup stayed primary at epoch 2"
mt_start main >/dev/null || fail "mailtwind on main did not restart"
lab_wait_for 30 mt_role_is main primary 3 || fail "no failback once main was stable: $(mt backup status | grep decision)"
sleep 7
(($(takeovers) == 2)) || fail "$(takeovers) takeovers, want 2 (one failover, one failback)"
mt_role_is main primary 3 || fail "the role moved again after the failback"
echo "   main stable: one failback (epoch 3), and nothing more"

settle_and_account main "$log" "$SINK_OK"
echo "$TOTAL messages answered 250: $LOST lost, $DUPS delivered twice"
((LOST == 0)) || fail "$LOST accepted messages were lost"
pass
