#!/bin/bash
#
# t-25-witness-etcd-down: the witness's majority dies while both nodes are
# up. The pair keeps serving as it is: main stays primary and keeps taking
# and delivering mail (its standby follows, so it needs no lease:
# Patroni's "failsafe"), backup takes no failover decision without the
# witness, both say so in `status`, and main raises `witness-lost`. The
# members come back: main holds the leader key again (`witness-back`).
# Checked at the sink by Message-ID: 0 lost, 0 delivered twice.
. "$(dirname "$0")/../lib.sh"

WITNESS_TTL=4
witness_pair_setup t-25
pair_start
witness_wait_held main
start_sender 20 "a@sink.lab.test"
sleep 2

# Two of three members die: etcd3 alone has no quorum and answers nothing.
lab_etcd_stop etcd1
lab_etcd_stop etcd2
t_down=$EPOCHREALTIME
before=$(wc -l <"$log")
unreachable() { [[ $(mt_witness "$1" reachable) == False ]]; }
lab_wait_for 10 unreachable main || fail "main does not say the witness is unreachable: $(mt main status)"
lab_wait_for 10 mt_event_raised main witness-lost || fail "main raised no witness-lost event"
# Three TTLs without etcd: the lease main held has long run out here.
sleep $((3 * WITNESS_TTL))
mt_role_is main primary 1 || fail "main did not stay primary without etcd: $(mt main status)"
mt_role_is backup standby 1 || fail "backup changed role without the witness: $(mt backup status)"
lab_postfix_running main || fail "main's Postfix stopped while its standby follows: $(grep -h 'decide:' "$LAB_DIR/main/mailtwind.log" | tail -3)"
grep -q "fencing" <(grep -h "decide:" "$LAB_DIR/main/mailtwind.log" | awk -v t="$(date -d @"${t_down%.*}" +%H:%M:%S)" '$1 > t') &&
	fail "main fenced itself while its standby follows"
during=$(($(wc -l <"$log") - before))
((during > 3 * WITNESS_TTL * 10)) || fail "only $during messages accepted in $((3 * WITNESS_TTL)) s without etcd"
mt main status | grep -A4 '^witness' | sed 's/^/   main: /'
[[ $(mt_ha backup decision) == *"no failover decision without it"* ]] ||
	fail "backup's decision does not say it takes none without the witness: $(mt_ha backup decision)"
[[ $(mt_ha main decision) == *"no failover decision without the witness"* ]] ||
	fail "main's decision does not say it serves on without the witness: $(mt_ha main decision)"
echo "etcd majority down for $((3 * WITNESS_TTL)) s: main served on ($during messages accepted), backup followed; main raised witness-lost"

# The members come back: main renews (or claims the key again) and says so.
lab_etcd_start etcd1
lab_etcd_start etcd2
t_up=$EPOCHREALTIME
lab_wait_for 30 lab_etcd_healthy etcd1 etcd2 etcd3 || fail "etcd did not recover"
witness_wait_held main 20
back=$(python3 -c "print(f'{$EPOCHREALTIME - $t_up:.1f}')")
lab_wait_for 10 mt_event_raised main witness-back || fail "main raised no witness-back event"
mt_role_is main primary 1 && mt_role_is backup standby 1 || fail "roles changed when etcd came back"
[[ $(lab_etcdctl etcd1 get --print-value-only /mailtwin/lab/leader) == '{"epoch":1,"node":"main"}' ]] ||
	fail "the leader key does not name main at epoch 1: $(lab_etcdctl etcd1 get /mailtwin/lab/leader)"
echo "etcd back: main holds the leader key again after $back s (both members' start included)"
sleep 2

settle_and_account main "$log" "$SINK_OK"
echo "$TOTAL messages answered 250: $LOST lost, $DUPS delivered twice"
((LOST == 0)) || fail "$LOST accepted messages were lost: $(head -3 "$LAB_DIR/lost" | tr '\n' ' ')"
((DUPS == 0)) || fail "$DUPS messages were delivered twice"
pass
