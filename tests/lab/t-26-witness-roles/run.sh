#!/bin/bash
#
# t-26-witness-roles: with a witness (3-member etcd, ttl 4 s), the one-sided
# partitions change nothing, a switchover hands the leader key over at
# once, and a primary's death is taken over only once its lease expired.
#   A. main cut from backup only (3 TTLs): main keeps its lease and serves;
#      backup finds the key held and does not take over.
#   B. main cut from etcd only (3 TTLs): its standby follows, so main serves
#      on without a lease; backup takes no decision.
#   C. `mailtwin switchover`: main revokes its lease at the step-down,
#      backup claims the key at epoch 2 and serves (never fenced).
#   D. backup (now primary) is killed -9: main takes over at epoch 3 only
#      after backup's lease expired (not before), by acquiring the key.
# Checked at the sink by Message-ID: 0 lost; duplicates counted (a kill -9
# may cut a delivery after the destination took it).
. "$(dirname "$0")/../lib.sh"

WITNESS_TTL=4
witness_pair_setup t-26
pair_start
witness_wait_held main
start_sender 20 "a@sink.lab.test"
sleep 2
serving() { mt_role_is "$1" primary "$2" && lab_postfix_running "$1"; }
accepted_by() { awk -v ip="$(lab_ip "$1")" '$4 == ip' "$log" | wc -l; }

# A. main <-> backup only.
n0=$(accepted_by main)
lab_cut main t26a backup
sleep $((3 * WITNESS_TTL))
serving main 1 || fail "A: main stopped serving although only its standby was cut off: $(mt_ha main decision)"
mt_role_is backup standby 1 || fail "A: backup took over while main held the key: $(mt backup status)"
[[ $(mt_ha backup decision) == *"main holds the leader key"* ]] ||
	fail "A: backup's decision does not name the key's holder: $(mt_ha backup decision)"
echo "A. main cut from backup for $((3 * WITNESS_TTL)) s: main served on ($(($(accepted_by main) - n0)) accepted), backup: $(mt_ha backup decision | sed 's/.*; but //')"
lab_heal main t26a
mt_wait_state main live 20 || fail "A: the link did not come back"

# B. main <-> etcd only.
n0=$(accepted_by main)
lab_cut main t26b etcd1 etcd2 etcd3
sleep $((3 * WITNESS_TTL))
serving main 1 || fail "B: main stopped serving although its standby follows: $(mt_ha main decision)"
mt_role_is backup standby 1 || fail "B: backup changed role: $(mt backup status)"
[[ $(mt_witness main reachable) == False ]] || fail "B: main does not say etcd is unreachable"
echo "B. main cut from etcd for $((3 * WITNESS_TTL)) s: main served on ($(($(accepted_by main) - n0)) accepted): $(mt_ha main decision | sed 's/.*; the witness/the witness/')"
lab_heal main t26b
witness_wait_held main 15

# C. Switchover: the key moves with the role.
out=$(mt main switchover) || fail "C: switchover failed: $out"
lab_wait_for 20 mt_role_is backup primary 2 || fail "C: backup is not primary at epoch 2: $(mt backup status)"
lab_wait_for 20 mt_role_is main standby 2 || fail "C: main did not step down"
witness_wait_held backup 10
t_held=$EPOCHREALTIME
grep -q "decide: .*fenc" "$LAB_DIR/backup/mailtwind.log" && fail "C: the new primary fenced itself: $(grep -m1 'decide: .*fenc' "$LAB_DIR/backup/mailtwind.log")"
[[ $(lab_etcdctl etcd1 get --print-value-only /mailtwin/lab/leader) == '{"epoch":2,"node":"backup"}' ]] ||
	fail "C: the leader key does not name backup at epoch 2: $(lab_etcdctl etcd1 get /mailtwin/lab/leader)"
echo "C. switchover: backup holds the leader key at epoch 2 ($(grep -m1 -o 'witness: this node holds the leader key [^(]*' "$LAB_DIR/backup/mailtwind.log"))"
mt_wait_state backup live 20 || fail "C: backup does not replicate to main"
sleep 3

# D. The new primary dies: main waits for its lease, then takes over.
t0=$EPOCHREALTIME
lab_crash backup
t_ok=$(lab_exec client python3 "$REPO/lab/smtp_wait.py" "$(lab_ip main)" 25 30) ||
	fail "D: main does not accept mail 30 s after backup died: $(mt main status)"
mt_role_is main primary 3 || fail "D: main serves but is not primary at epoch 3"
rto=$(python3 -c "print(f'{$t_ok - $t0:.2f}')")
waited=$(grep -c "decide: .*but backup holds the leader key" "$LAB_DIR/main/mailtwind.log" || true)
echo "D. backup killed: main accepts mail after $rto s (it found the key still held first: $waited decisions)"
((waited > 0)) || fail "D: main took over without waiting for backup's lease"
python3 -c "import sys; sys.exit(0 if $t_ok - $t0 > 1.0 else 1)" || fail "D: main served $rto s after the kill: before the lease could expire"
sleep 3

settle_and_account main "$log" "$SINK_OK"
echo "$TOTAL messages answered 250: $LOST lost, $DUPS delivered twice"
((LOST == 0)) || fail "$LOST accepted messages were lost: $(head -3 "$LAB_DIR/lost" | tr '\n' ' ')"
pass
