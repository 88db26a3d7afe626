#!/bin/bash
#
# gate.sh: what the zero-loss gate costs, and whether it keeps its promise.
# Run as root:  bench/run gate [--quick]     (docs/benchmarks.md)
#
# One lab: main and backup (Postfix + mailtwind; main relays to dest), dest
# (smtp-sink, nothing written to disk), client (smtp-source, paced_send.py,
# lab/gate_trial.py).
#
# 1. Throughput, in interleaved rounds: smtp-source -s 20 -l 4096 -m N.
#    msgs/s = N / (start of smtp-source -> main's queue empty).
#      plain  - Postfix alone (mailtwind stopped, no proxy);
#      async  - mailtwind pair replicating, Postfix without the proxy;
#      relay  - (logged, not in RESULT) the gate in Postfix's path but
#               durability async: what the proxy path itself costs (a second
#               smtpd per message, two more TCP hops), without any waiting;
#      sync   - mailtwind pair, Postfix's smtp service through the gate
#               (smtpd_proxy_filter), durability sync;
#      strict - as sync, durability strict: the after-filter puts every
#               message on hold, the gate releases it once the standby holds
#               it and waits for the release's replica too (two round trips).
#    ratios = median(mode) / median(plain).
# 2. Added latency of the final reply at a steady 200 msg/s (paced_send.py,
#    4 sessions, 4 KB): how long the gate held each "250 ... queued as"
#    (its hold_p50_ms/hold_p99_ms: from the after-filter's reply to the
#    standby's acknowledgement). That is the gate's internal hold only; what
#    the client sees is client_added_p50_ms / client_added_p99_ms: its own
#    MAIL-to-250 time through the gate (sync) minus without it (async, no
#    proxy), same 200 msg/s load, same run. It includes the proxy path too.
# 3. Trials (lab/gate_trial.py) under smtp-source load, durability sync: the
#    instant a 250 arrives the primary's mailtwind is frozen (SIGSTOP: nothing
#    more replicates) and the standby's mirror must hold the queue ID.
#    200 trials (quick: 100); then half as many in strict, where the copy must
#    be outside the mirror's hold/. trials and lost count both.
#
# The last line is machine-readable:
#   RESULT plain_msgs_per_s=.. async_ratio=.. sync_ratio=.. strict_ratio=..
#          gate_added_p50_ms=.. gate_added_p99_ms=.. client_added_p50_ms=..
#          client_added_p99_ms=.. trials=.. lost=..
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$REPO/bench
# shellcheck source=../lab/lab.sh
. "$REPO/lab/lab.sh"
# shellcheck source=../lab/mailtwin.sh
. "$REPO/lab/mailtwin.sh"
# shellcheck source=lib.sh
. "$BENCH/lib.sh"
# The benchmark starts and stops Postfix itself, and kills nothing.
export MT_MANAGE=false MT_FAILOVER=manual
# Plain Postfix is the baseline here, reached on port 25 while mailtwind is
# not running: no relay in front of it (docs/failover.md, "Who owns port 25";
# bench/run mx measures the relay).
export MT_RELAY=off

bench_args gate "$@"
if ((QUICK)); then
	MODE=quick ROUNDS=1 TP_MSGS=1000 LAT_SECS=10 TRIALS=100
else
	MODE=full ROUNDS=3 TP_MSGS=3000 LAT_SECS=30 TRIALS=200
fi
SOURCE_OPTS=(-s 20 -l 4096 -f source@client.lab.test -t rcpt@dest.lab.test)
[[ -x $MAILTWIN_BIN/mailtwind && -x $MAILTWIN_BIN/mailtwin ]] ||
	{ echo "gate: no mailtwind/mailtwin in $MAILTWIN_BIN (build first)" >&2; exit 1; }

bench_lab_init bench-gate
lab_host main 1
lab_host backup 2
lab_host dest 9
lab_host client 20
# Trial messages go to dead.lab.test (nothing listens on dest:2526): they
# stay queued, so "not in the mirror" cannot mean "delivered and gone".
DEAD="transport_maps = inline:{ dead.lab.test=smtp:[$(lab_ip dest)]:2526 }"
lab_postfix_create main relay=dest "$DEAD"
lab_postfix_create backup relay=dest "$DEAD"
mt_pki main backup
mt_config main primary backup
mt_config backup standby main
DEST_IP=$(lab_ip dest)
lab_bg dest "$LAB_DIR/sink.log" smtp-sink -u nobody "$DEST_IP:25" 1024 >/dev/null
lab_wait_port dest "$DEST_IP" 25 || exit 1
# GATE_AFTER_FILTER=unix: the gate reaches the after-filter over a unix
# socket (a master.cf unix service) instead of loopback TCP.
if [[ ${GATE_AFTER_FILTER:-inet} == unix ]]; then
	for h in main backup; do
		sed -i "/^\[gate\]/a after_filter = \"unix:$LAB_DIR/$h/spool/private/mailtwin-after\"" "$LAB_DIR/$h/mailtwin.toml"
	done
fi
bench_log "after-filter: $(grep '^after_filter' "$LAB_DIR/main/mailtwin.toml" || echo '127.0.0.1:10026 (default)')"
# The after-filter service exists throughout; the smtp service is switched
# between direct (plain, async) and through the gate (sync).
mt_gate main
lab_postfix_start main
gate_route() {  # gate_route on|off
	local v=
	[[ $1 == on ]] && v=127.0.0.1:10025
	lab_postconf main -P "$(mt_public_service main)/inet/smtpd_proxy_filter=$v"
	lab_pf main postfix reload >/dev/null
	sleep 1  # let the old smtpd processes finish
}
gate_route off
BUSY_START=$(bench_cpu_busy 2)
bench_log "machine CPU busy with the lab idle: $BUSY_START %"

# strict_on / strict_off: the after-filter with and without strict's hold
# (postfix-config --apply regenerates it from the config's durability).
strict_on() {
	mt_set_durability main strict
	mt_gate main
	gate_route on
}
strict_off() {
	mt_set_durability main sync
	mt_gate main
}

pair_start_idle() {
	mt_start backup >/dev/null
	mt_start --timeout 30 main >/dev/null
	bench_mt_wait_idle main 30 || { bench_log "link not live: $(mt_json main)"; return 1; }
}
pair_stop() {
	mt_stop main
	mt_stop backup
}

# round MODE: one throughput round; prints msgs/s.
round() {
	local mode=$1 t0 t2 rate
	case $mode in
	async) pair_start_idle ;;
	relay) gate_route on; mt_set_durability main async; pair_start_idle ;;
	sync) gate_route on; mt_set_durability main sync; pair_start_idle ;;
	strict) strict_on; pair_start_idle ;;
	esac
	local j0 j1
	[[ $mode == plain ]] || j0=$(mt_json main)
	t0=$(bench_now)
	lab_source client "$(lab_ip main)" "${SOURCE_OPTS[@]}" -m "$TP_MSGS" >/dev/null
	bench_wait_queue main "" 0 300 || bench_log "WARNING: main's queue did not empty"
	t2=$(bench_now)
	rate=$(awk -v n="$TP_MSGS" -v a="$t0" -v b="$t2" 'BEGIN { printf "%.1f\n", n / (b - a) }')
	local cpu=""
	if [[ $mode != plain ]]; then
		j1=$(mt_json main)
		cpu=", primary mailtwind $(awk -v a="$(lab_json "$j1" cpu_ms)" -v b="$(lab_json "$j0" cpu_ms)" -v n="$TP_MSGS" 'BEGIN { printf "%.0f", (a - b) * 1000 / n }') ms CPU per 1000 msgs"
	fi
	if [[ $mode == sync || $mode == strict ]]; then
		local g
		mapfile -t g < <(lab_json "$j1" gate.messages gate.hold_p50_ms gate.hold_p99_ms gate.unprotected_total gate.refused gate.errors)
		bench_log "  $mode: gate held ${g[0]} messages, hold p50 $(bench_fmt "${g[1]}" %.2f) ms p99 $(bench_fmt "${g[2]}" %.2f) ms, unprotected ${g[3]}, refused ${g[4]}, errors ${g[5]}"
	fi
	[[ $mode == strict ]] && strict_off
	[[ $mode == relay || $mode == sync || $mode == strict ]] && gate_route off
	[[ $mode == plain ]] || pair_stop
	bench_log "  $mode: $TP_MSGS msgs at $rate msgs/s$cpu"
	echo "$rate"
}

bench_log "warm-up"
lab_source client "$(lab_ip main)" "${SOURCE_OPTS[@]}" -m 500 >/dev/null
bench_wait_queue main "" 0 120
declare -a P A R S X
for ((r = 1; r <= ROUNDS; r++)); do
	bench_log "1. throughput round $r/$ROUNDS ($TP_MSGS msgs, 20 sessions)"
	P+=("$(round plain)")
	A+=("$(round async)")
	R+=("$(round relay)")
	S+=("$(round sync)")
	X+=("$(round strict)")
done
read -r RELAY _ _ <<<"$(bench_stats "${R[@]}")"
read -r PLAIN _ _ <<<"$(bench_stats "${P[@]}")"
read -r ASYNC _ _ <<<"$(bench_stats "${A[@]}")"
read -r SYNC _ _ <<<"$(bench_stats "${S[@]}")"
read -r STRICT _ _ <<<"$(bench_stats "${X[@]}")"
ASYNC_RATIO=$(bench_ratio "$ASYNC" "$PLAIN")
SYNC_RATIO=$(bench_ratio "$SYNC" "$PLAIN")
STRICT_RATIO=$(bench_ratio "$STRICT" "$PLAIN")
bench_log "throughput: plain ${P[*]}, async ${A[*]}, relay ${R[*]}, sync ${S[*]}, strict ${X[*]} msgs/s"
bench_log "  ratios: async $ASYNC_RATIO, relay only (proxy path, no waiting) $(bench_ratio "$RELAY" "$PLAIN"), sync $SYNC_RATIO, strict $STRICT_RATIO"

bench_log "2. latency at 200 msg/s for $LAT_SECS s: async, then through the gate"
paced() {
	lab_exec client "$BENCH_PY" "$BENCH/paced_send.py" --server "$(lab_ip main)" --rate 200 \
		--threads 4 --size 4096 --helo client.lab.test --duration "$LAT_SECS"
}
pair_start_idle
PACED_ASYNC=$(paced) || bench_log "WARNING: paced sender failures (async)"
bench_log "  async: $PACED_ASYNC"
pair_stop
gate_route on
mt_set_durability main sync
pair_start_idle
PACED_SYNC=$(paced) || bench_log "WARNING: paced sender failures (sync)"
bench_log "  sync:  $PACED_SYNC"
J=$(mt_json main)
ADDED50=$(bench_fmt "$(lab_json "$J" gate.hold_p50_ms)" %.2f)
ADDED99=$(bench_fmt "$(lab_json "$J" gate.hold_p99_ms)" %.2f)
bench_log "  gate hold: p50 $ADDED50 ms, p99 $ADDED99 ms over $(lab_json "$J" gate.hold_samples) messages; replication lag p50 $(bench_fmt "$(lab_json "$J" replication.lag_p50_ms)" %.2f) p99 $(bench_fmt "$(lab_json "$J" replication.lag_p99_ms)" %.2f) ms"
bench_log "  client MAIL..250: async p50 $(bench_field "$PACED_ASYNC" smtp_p50_ms) p99 $(bench_field "$PACED_ASYNC" smtp_p99_ms) ms; sync p50 $(bench_field "$PACED_SYNC" smtp_p50_ms) p99 $(bench_field "$PACED_SYNC" smtp_p99_ms) ms"
CLIENT50=$(bench_diff "$(bench_field "$PACED_SYNC" smtp_p50_ms)" "$(bench_field "$PACED_ASYNC" smtp_p50_ms)")
CLIENT99=$(bench_diff "$(bench_field "$PACED_SYNC" smtp_p99_ms)" "$(bench_field "$PACED_ASYNC" smtp_p99_ms)")
bench_log "  the client's added time (sync - async): p50 $CLIENT50 ms, p99 $CLIENT99 ms"

bench_log "3. $TRIALS freeze trials under load (sync)"
bench_wait_queue main "" 0 120 || true
lab_bg client "$LAB_DIR/load.log" smtp-source -M client.lab.test -s 4 -m 100000 -l 3000 \
	-f s@client.lab.test -t load@dest.lab.test "$(lab_ip main):25" >/dev/null
LOAD=$LAB_BG_PID
T=$(lab_exec client "$BENCH_PY" "$REPO/lab/gate_trial.py" --server "$(lab_ip main)" \
	--trials "$TRIALS" --freeze "$MT_PID_main" --mirror "$LAB_DIR/backup/mirror" \
	--rcpt trial@dead.lab.test | tail -n 1)
lab_kill "$LOAD" || true
bench_log "  $T"
N_TRIALS=$(bench_field "$T" trials)
LOST=$(bench_field "$T" missing)
pair_stop
bench_log "   and $((TRIALS / 2)) under load in strict (a copy in the mirror's hold/ does not count)"
# (the sync trials' messages stay in deferred/: wait for the load only)
bench_wait_queue main "maildrop incoming active hold" 0 120 || true
strict_on
pair_start_idle
lab_bg client "$LAB_DIR/load2.log" smtp-source -M client.lab.test -s 4 -m 100000 -l 3000 \
	-f s@client.lab.test -t load@dest.lab.test "$(lab_ip main):25" >/dev/null
LOAD=$LAB_BG_PID
T=$(lab_exec client "$BENCH_PY" "$REPO/lab/gate_trial.py" --server "$(lab_ip main)" \
	--trials "$((TRIALS / 2))" --freeze "$MT_PID_main" --mirror "$LAB_DIR/backup/mirror" \
	--rcpt trial@dead.lab.test --not-on-hold | tail -n 1)
lab_kill "$LOAD" || true
bench_log "  $T"
J=$(mt_json main)
bench_log "  strict gate: released $(lab_json "$J" gate.released), refused $(lab_json "$J" gate.refused), hold p50 $(bench_fmt "$(lab_json "$J" gate.hold_p50_ms)" %.2f) ms p99 $(bench_fmt "$(lab_json "$J" gate.hold_p99_ms)" %.2f) ms"
N_TRIALS=$((N_TRIALS + $(bench_field "$T" trials)))
LOST=$((LOST + $(bench_field "$T" missing)))
pair_stop
strict_off
gate_route off
BUSY_END=$(bench_cpu_busy 2)
bench_log "machine CPU busy at the end: $BUSY_END %"

bench_log "targets: sync_ratio >= 0.85: $(bench_verdict "$SYNC_RATIO" '>=' 0.85); gate_added_p99_ms <= 5: $(bench_verdict "$ADDED99" '<=' 5); lost == 0: $([[ $LOST == 0 ]] && echo PASS || echo MISS)"
echo "RESULT plain_msgs_per_s=$PLAIN async_ratio=$ASYNC_RATIO sync_ratio=$SYNC_RATIO strict_ratio=$STRICT_RATIO gate_added_p50_ms=$ADDED50 gate_added_p99_ms=$ADDED99 client_added_p50_ms=$CLIENT50 client_added_p99_ms=$CLIENT99 trials=${N_TRIALS:-NA} lost=${LOST:-NA}"
