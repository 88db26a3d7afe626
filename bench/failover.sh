#!/bin/bash
#
# bench/run failover [--quick]: how fast mail is accepted again after the
# primary dies, and whether anything is lost or delivered twice.
#
# Lab: main and backup (Postfix + mailtwind each, gate on, failover auto,
# default [failover] settings), dest (smtp-sink), client (lab/sender.py at
# 40 msg/s, trying main then backup like an MX client).
#
# 1. Kills: the primary's host dies while mail flows, two ways, alternating:
#    - loud (kill -9 of every process: lab_crash): its kernel lives on, so
#      the link closes and probes are refused at once;
#    - silent (power cut: lab_silence cuts its cable - no RST, no ICMP - and
#      freezes every process for good): the standby hears nothing and must
#      judge by the link's silence and probes that hang.
#    From the standby's side:
#      detect  = death -> the standby's decision "primary down" (its log)
#      promote = that decision -> its SMTP service answers (EHLO, polled every
#                20 ms from the client host)
#      rto     = death -> SMTP answers again (rto_* loud, silent_rto_* silent)
#    The dead node comes back (a silenced one is revived: its frozen
#    processes killed, its cable back) and its mailtwind is restarted: it
#    must rejoin as standby (it learns the newer epoch, sets its queue aside
#    and hands over what only it had), and the next kill hits the other
#    node. KILLS kills of each kind (full 20 + 20, quick 6 + 6).
# 2. Accounting: every message the client got a 250 for (from either node)
#    is looked up at the sink by Message-ID: lost, or delivered twice.
# 3. Switchover and failback under the same load: `mailtwin switchover` on
#    the primary, then `mailtwin failback` on the preferred node (main). The
#    pause is what the client sees: the longest gap between two 250s (the
#    sender logs the time of each), around each command. SWITCHES rounds
#    (full 5, quick 2); the p99 (= max here) is reported.
# 4. Jitter: both nodes' outgoing packets get 50 ms +/- 20 ms of delay and 1 %
#    loss (lab_netem: this kernel has no sch_netem, so iptables NFQUEUE and
#    lab/netdelay do what `tc qdisc ... netem delay 50ms 20ms loss 1%` does)
#    for JITTER_S seconds (full 600, quick 60) with mail flowing: every
#    takeover in that time is a false failover.
# 5. Saturation: the primary's smtpd greets every client 2 s late (what a
#    saturated server looks like from outside; lab_postfix_slow_greeting)
#    for 6 s, then 4 s on time, SLOW_ROUNDS times (full 10, quick 3): every
#    probe fails, the link lives; every takeover is a false failover.
# 6. Partitions with a witness: tests/lab/t-24-witness-partition, PARTITIONS
#    times (full 5, quick 2; BENCH_PARTITIONS), each its own lab with a real
#    3-member etcd cluster (ttl 4 s): the primary cut from its standby and
#    etcd while the client still sends to it. Summed over the runs:
#    partition_lost and partition_dup (by Message-ID at the sink; targets
#    0), and the p99 of the times from the cut to the old primary refusing
#    SMTP (partition_refuse_p99_s, < ttl) and to the standby serving
#    (partition_serve_p99_s). A run that fails before its accounting counts
#    in partition_failed (the end of its output goes to the bench's log).
# 7. Sending MTAs: bench/mx.sh, with and without --silent (MX_ROUNDS kills
#    each, full 3, quick 1; BENCH_MX_ROUNDS): a real sending Postfix with
#    Postfix's default retry settings finds the pair by DNS MX; what it
#    deferred or found refused by both MX hosts, and the duplicates by source.
# The settings are the product's defaults (heartbeat_interval 100 ms,
# peer_timeout 1.2 s, check_interval 250 ms, fail_threshold 3, probe_timeout
# 700 ms).
#
# Last line: RESULT kills=N (of each kind) rto_p50_s=.. rto_p99_s=..
#   silent_rto_p50_s=.. silent_rto_p99_s=.. detect_p99_s=.. promote_p99_s=..
#   (both kinds) switchover_pause_s=.. failback_pause_s=.. false_failovers=N
#   partition_dup=N partition_lost=N (with a witness) lost=N duplicated=N
#   partition_refuse_p99_s=.. partition_serve_p99_s=.. partition_failed=N
#   mx_kills=N (step 7, both kinds) refused_both=N sender_deferred=N
#   dup_lost250=N dup_other=N mx_lost=N mx_drain_gap_s=.. mx_failed=N
set -euo pipefail
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH/.." && pwd)
MAILTWIN_BIN=${MAILTWIN_BIN:-$REPO/build/apps}
# shellcheck source=../lab/lab.sh
. "$REPO/lab/lab.sh"
# shellcheck source=../lab/mailtwin.sh
. "$REPO/lab/mailtwin.sh"
# shellcheck source=lib.sh
. "$BENCH/lib.sh"
export MT_FAILOVER=auto MT_MANAGE=true MT_PREFERRED=main
bench_product_failover

bench_args failover "$@"
if ((QUICK)); then MODE=quick KILLS=6 SWITCHES=2 JITTER_S=60 SLOW_ROUNDS=3 PARTITIONS=2; else MODE=full KILLS=20 SWITCHES=5 JITTER_S=600 SLOW_ROUNDS=10 PARTITIONS=5; fi
PARTITIONS=${BENCH_PARTITIONS:-$PARTITIONS}
SWITCHES=${BENCH_SWITCHES:-$SWITCHES}
SLOW_ROUNDS=${BENCH_SLOW_ROUNDS:-$SLOW_ROUNDS}
JITTER_S=${BENCH_JITTER_S:-$JITTER_S}
KILLS=${BENCH_KILLS:-$KILLS}
[[ -x $MAILTWIN_BIN/mailtwind && -x $MAILTWIN_BIN/mailtwin ]] ||
	{ echo "failover: no mailtwind/mailtwin in $MAILTWIN_BIN (build first)" >&2; exit 1; }

bench_lab_init bench-failover
lab_host main 1
lab_host backup 2
lab_host dest 9
lab_host client 20
lab_postfix_create main relay=dest
lab_postfix_create backup relay=dest
SINK=$LAB_DIR/sink
lab_sink_start dest 25 "$SINK" >/dev/null
mt_pki main backup
mt_config main primary backup
mt_config backup standby main
mt_gate main
mt_gate backup
lab_postfix_start main
mt_start backup >/dev/null
mt_start main >/dev/null
mt_wait_state main live 30 || { bench_log "the link did not come up"; exit 1; }
bench_log "mode $MODE: $KILLS kills of each kind; defaults: $(grep -E '^(heartbeat_interval|peer_timeout|check_interval|fail_threshold|probe_timeout)' "$LAB_DIR/main/mailtwin.toml" | tr '\n' ' ')"

log=$LAB_DIR/accepted.log
lab_bg client "$LAB_DIR/sender.out" "$BENCH_PY" "$REPO/lab/sender.py" \
	--servers "$(lab_ip main),$(lab_ip backup)" --rcpt "a@sink.lab.test,b@sink.lab.test" \
	--rate 40 --log "$log" --stop-file "$LAB_DIR/stop" --max-seconds 3600 --times >/dev/null

pair_ready() { bench_pair_ready "$@"; }
log_time() {  # log_time FILE PATTERN AFTER: epoch time of the first line matching after AFTER
	"$BENCH_PY" - "$@" <<-'PY'
		import datetime, re, sys
		path, pat, after = sys.argv[1], sys.argv[2], float(sys.argv[3])
		for line in open(path, errors="replace"):
		    if pat not in line:
		        continue
		    t = datetime.datetime.fromisoformat(line.split()[0]).timestamp()
		    if t >= after - 0.002:
		        print(f"{t:.3f}")
		        break
	PY
}

P=main S=backup
declare -a RTO SRTO DET PRO
for ((k = 1; k <= 2 * KILLS; k++)); do
	kind=$( ((k % 2)) && echo loud || echo silent)
	lab_wait_for 60 pair_ready "$P" "$S" || {
		bench_log "kill $k: $P/$S not ready: $(mt "$P" status 2>&1 | head -5) / $(mt "$S" status 2>&1 | head -8)"
		exit 1
	}
	sleep 2  # mail flows through the pair
	t0=$EPOCHREALTIME
	if [[ $kind == loud ]]; then lab_crash "$P"; else lab_silence "$P"; fi
	t_ok=$(lab_exec client "$BENCH_PY" "$REPO/lab/smtp_wait.py" "$(lab_ip "$S")" 25 30) || {
		bench_log "kill $k ($kind): $S did not accept mail within 30 s; its log:"
		tail -20 "$LAB_DIR/$S/mailtwind.log" >&2
		exit 1
	}
	t_det=$(log_time "$LAB_DIR/$S/mailtwind.log" "decide: primary down" "$t0")
	rto=$(bench_sub "$t_ok" "$t0")
	if [[ $kind == loud ]]; then RTO+=("$rto"); else SRTO+=("$rto"); fi
	DET+=("$(bench_sub "${t_det:-$t_ok}" "$t0")")
	PRO+=("$(bench_sub "$t_ok" "${t_det:-$t_ok}")")
	bench_log "kill $k ($kind): $P died; $S accepts mail after $(bench_fmt "$rto" %.3f) s (detect $(bench_fmt "${DET[-1]}" %.3f) s + promote $(bench_fmt "${PRO[-1]}" %.3f) s)"
	[[ $kind == loud ]] || lab_revive "$P"
	mt_start "$P" >/dev/null  # it comes back and must rejoin as standby
	tmp=$P P=$S S=$tmp
done
lab_wait_for 60 pair_ready "$P" "$S" || bench_log "after the last kill, $S did not rejoin"

# 3. Switchover and failback: the client's longest gap between two 250s
# (lab_longest_gap: from t0, the command, until 2 s after the roles swapped).
declare -a SW FB
if [[ $(mt_status main role) != primary ]]; then
	mt main failback >/dev/null || { bench_log "could not move the role to main"; exit 1; }
fi
for ((r = 1; r <= SWITCHES; r++)); do
	for kind in switchover failback; do
		# switchover: from the preferred node (main) to backup; failback: back.
		if [[ $kind == switchover ]]; then want_p=main want_s=backup; else want_p=backup want_s=main; fi
		lab_wait_for 60 pair_ready "$want_p" "$want_s" || {
			bench_log "$kind $r: $want_p/$want_s not ready"; exit 1; }
		sleep 2
		t0=$EPOCHREALTIME
		# switchover is asked on the primary, failback on the preferred standby
		asked=$([[ $kind == switchover ]] && echo "$want_p" || echo "$want_s")
		out=$(mt "$asked" "$kind" 2>&1) || { bench_log "$kind $r failed: $out"; exit 1; }
		lab_wait_for 10 pair_ready "$want_s" "$want_p" || { bench_log "$kind $r: roles did not swap"; exit 1; }
		sleep 2
		gap=$(lab_longest_gap "$log" "$t0")
		if [[ $kind == switchover ]]; then SW+=("$gap"); else FB+=("$gap"); fi
		bench_log "$kind $r (asked on $asked): intake pause $gap s ($out)"
	done
done
P=main S=backup

# 4. Jitter and loss: no takeover may happen.
before=$(cat "$LAB_DIR"/{main,backup}/mailtwind.log | grep -c " warning taking over at epoch" || true)
e0=$(mt_status main epoch)
lab_netem main 50 20 1
lab_netem backup 50 20 1
bench_log "jitter: 50 ms +/- 20 ms and 1 % loss on both nodes for $JITTER_S s, mail flowing"
sleep "$JITTER_S"
lab_netem_off main
lab_netem_off backup
after=$(cat "$LAB_DIR"/{main,backup}/mailtwind.log | grep -c " warning taking over at epoch" || true)
FALSE=$((after - before))
# What peer_timeout must outlast: the longest silence a live link had (each
# connection logs its new maxima), whole run.
# Only silences above three heartbeats are logged: 0 means none was.
longest=$({ grep -ho 'silent for [0-9]* ms, the longest' "$LAB_DIR"/{main,backup}/mailtwind.log || true; } |
	awk '$3 > m { m = $3 } END { print m + 0 }')
bench_log "jitter: longest silence of a live link (either side, whole run): $longest ms (0: none above 3 heartbeats)"
bench_log "jitter: $FALSE takeovers (epoch $e0 -> $(mt_status main epoch)); probes failed meanwhile: $(grep -c 'probe: .* failed (1 in a row)' "$LAB_DIR/backup/mailtwind.log" || true) first failures on backup; link drops: $(grep -c 'link to .* lost' "$LAB_DIR/main/mailtwind.log" || true) on main (whole run)"
if [[ $(mt_status main role) != primary ]]; then P=backup S=main; fi

# 5. Saturation: a slow greeting must not look like a dead primary.
before=$(cat "$LAB_DIR"/{main,backup}/mailtwind.log | grep -c " warning taking over at epoch" || true)
for ((r = 1; r <= SLOW_ROUNDS; r++)); do
	lab_postfix_slow_greeting "$P" 2
	sleep 6
	lab_postfix_slow_greeting "$P" off
	sleep 4
done
after=$(cat "$LAB_DIR"/{main,backup}/mailtwind.log | grep -c " warning taking over at epoch" || true)
SLOW_FALSE=$((after - before))
FALSE=$((FALSE + SLOW_FALSE))
bench_log "saturation: $P greeted 2 s late for 6 s, $SLOW_ROUNDS times: $SLOW_FALSE takeovers; probes failed meanwhile: $(grep -c 'probe: .* failed (1 in a row)' "$LAB_DIR/$S/mailtwind.log" || true) first failures on $S (whole run)"
if [[ $(mt_status main role) != primary ]]; then P=backup S=main; fi

# Accounting.
touch "$LAB_DIR/stop"
sleep 3
# Committed queue files only (lab_postfix_settled): a kill -9 can leave a
# cleanup temporary file that is no message.
lab_wait_for 120 lab_postfix_settled "$P" || {
	bench_log "$P still has $(lab_postfix_queued "$P") messages queued: $(cd "$LAB_DIR/$P/spool" && find incoming active deferred maildrop -type f | head -5 | tr '\n' ' ')"
	[[ -z ${BENCH_PAUSE:-} ]] || { bench_log "lab kept $BENCH_PAUSE s: $LAB_DIR"; sleep "$BENCH_PAUSE"; }
}
sleep 1
lab_account "$log" "$SINK"
ACCEPTED=$TOTAL
bench_log "$ACCEPTED messages answered 250 over $((2 * KILLS)) kills, $((SWITCHES * 2)) switchovers, $JITTER_S s of jitter and $SLOW_ROUNDS slow phases: $LOST lost, $DUPS delivered twice ($(tail -1 "$LAB_DIR/sender.out" 2>/dev/null))"

# 6. Partitions with a witness (each run is a lab of its own).
PLOST=0 PDUP=0 PFAILED=0
declare -a PREF=() PSERVE=()
for ((r = 1; r <= PARTITIONS; r++)); do
	out=$LAB_DIR/partition-$r.out
	MAILTWIN_BIN=$MAILTWIN_BIN bash "$REPO/tests/lab/t-24-witness-partition/run.sh" >"$out" 2>&1 || true
	line=$(grep -m1 '^partition: main stopped answering SMTP after' "$out" || true)
	acct=$(grep -m1 'messages answered 250 (' "$out" || true)
	if [[ -z $line || -z $acct ]]; then
		PFAILED=$((PFAILED + 1))
		bench_log "partition $r: the run ended before its accounting: $(grep -m1 '^FAIL' "$out" || tail -1 "$out")"
		grep -vE '^20[0-9][0-9]-' "$out" | tail -n 8 >&2
		continue
	fi
	PREF+=("$(sed 's/.*after \([0-9.]*\) s (TTL.*/\1/' <<<"$line")")
	PSERVE+=("$(sed 's/.*backup serves after \([0-9.]*\) s.*/\1/' <<<"$line")")
	l=$(sed 's/.*: \([0-9]*\) lost, .*/\1/' <<<"$acct")
	d=$(sed 's/.* lost, \([0-9]*\) delivered twice.*/\1/' <<<"$acct")
	PLOST=$((PLOST + l)) PDUP=$((PDUP + d))
	bench_log "partition $r (witness, ttl 4 s): main refused SMTP after ${PREF[-1]} s, backup served after ${PSERVE[-1]} s; $acct; $(grep -m1 -E '^(PASS|FAIL)' "$out")"
done

# 7. Sending MTAs (see the top): mx.sh's keys MX_KEYS summed over both
# kinds (lost as mx_lost); mx_drain_gap_s is the worse of the two kinds'
# median drain time minus the classic backup MX's.
MX_ROUNDS=${BENCH_MX_ROUNDS:-$((QUICK ? 1 : 3))}
MX_KEYS="lost refused_both sender_deferred dup_lost250 dup_other"
declare -A MX=()
MX_FAILED=0 MX_GAP=NA
for kind in crash silent; do
	out=$LAB_DIR/mx-$kind.out
	flags=()
	[[ $kind == crash ]] || flags=(--silent)
	BENCH_ROUNDS=$MX_ROUNDS MAILTWIN_BIN=$MAILTWIN_BIN bash "$BENCH/mx.sh" "${flags[@]}" >"$out" 2>&1 || true
	r=$(grep '^RESULT ' "$out" | tail -1 || true)
	sed -n 's/^\[ *[0-9.]*s\] /mx '"$kind"': /p' "$out" >&2
	if [[ -z $r ]]; then
		MX_FAILED=$((MX_FAILED + 1))
		bench_log "mx $kind: bench/mx.sh ended without its RESULT: $(tail -3 "$out" | tr '\n' ' ')"
		continue
	fi
	for key in $MX_KEYS; do
		MX[$key]=$((${MX[$key]:-0} + $(bench_field "$r" "$key")))
	done
	g=$(bench_field "$r" drain_gap_s)
	MX_GAP=$(awk -v a="$MX_GAP" -v b="$g" 'BEGIN { print (a == "NA" || b + 0 > a + 0) ? b : a }')
done
if ((MX_FAILED == 2)); then for key in $MX_KEYS; do MX[$key]=NA; done; fi
bench_log "sending MTAs: $MX_ROUNDS kills by kill -9 and $MX_ROUNDS silent ($MX_FAILED runs failed): refused_both ${MX[refused_both]} (target 0: $(bench_verdict "${MX[refused_both]}" '<=' 0)), sender_deferred ${MX[sender_deferred]} (target 0: $(bench_verdict "${MX[sender_deferred]}" '<=' 0)), dup_lost250 ${MX[dup_lost250]} (target 0: $(bench_verdict "${MX[dup_lost250]}" '<=' 0)), dup_other ${MX[dup_other]}, lost ${MX[lost]}; drain gap to a classic backup MX $MX_GAP s (target <= 2: $(bench_verdict "$MX_GAP" '<=' 2))"

pct() { bench_pct "$@"; }
RTO50=$(pct 0.5 "${RTO[@]}")
RTO99=$(pct 0.99 "${RTO[@]}")
SRTO50=$(pct 0.5 "${SRTO[@]}")
SRTO99=$(pct 0.99 "${SRTO[@]}")
DET99=$(pct 0.99 "${DET[@]}")
PRO99=$(pct 0.99 "${PRO[@]}")
SWP=$(pct 0.99 "${SW[@]}")
FBP=$(pct 0.99 "${FB[@]}")
bench_log "rto p50 $RTO50 s, p99 $RTO99 s (target <= 2 s: $(bench_verdict "$RTO99" '<=' 2)); silent death: rto p50 $SRTO50 s, p99 $SRTO99 s (target <= 2 s: $(bench_verdict "$SRTO99" '<=' 2)); detect p99 $DET99 s; promote p99 $PRO99 s"
bench_log "switchover pause $SWP s, failback pause $FBP s (target <= 1 s: $(bench_verdict "$SWP" '<=' 1), $(bench_verdict "$FBP" '<=' 1)); false failovers $FALSE (target 0: $(bench_verdict "$FALSE" '<=' 0))"
bench_log "lost $LOST (target 0: $(bench_verdict "$LOST" '<=' 0)); duplicated $DUPS"
PREF99=NA PSERVE99=NA
if ((${#PREF[@]})); then PREF99=$(pct 0.99 "${PREF[@]}"); PSERVE99=$(pct 0.99 "${PSERVE[@]}"); fi
if ((${#PREF[@]} == 0)); then PLOST=NA PDUP=NA; fi
bench_log "partitions with a witness: $PARTITIONS runs ($PFAILED ended early): lost $PLOST, duplicated $PDUP (targets 0); the old primary refused after p99 $PREF99 s (ttl 4 s), the standby served after p99 $PSERVE99 s"
echo "RESULT kills=$KILLS rto_p50_s=$RTO50 rto_p99_s=$RTO99 silent_rto_p50_s=$SRTO50 silent_rto_p99_s=$SRTO99 detect_p99_s=$DET99 promote_p99_s=$PRO99 switchover_pause_s=$SWP failback_pause_s=$FBP false_failovers=$FALSE partition_dup=$PDUP partition_lost=$PLOST lost=$LOST duplicated=$DUPS partition_refuse_p99_s=$PREF99 partition_serve_p99_s=$PSERVE99 partition_failed=$PFAILED" \
	"mx_kills=$((2 * MX_ROUNDS)) refused_both=${MX[refused_both]} sender_deferred=${MX[sender_deferred]} dup_lost250=${MX[dup_lost250]} dup_other=${MX[dup_other]} mx_lost=${MX[lost]} mx_drain_gap_s=$MX_GAP mx_failed=$MX_FAILED"
