#!/bin/bash
#
# bench/run failover [--quick]: how fast mail is accepted again after the
# primary dies, and whether anything is lost or delivered twice.
#
# Lab: main and backup (Postfix + mailtwind each, gate on, failover auto,
# default [failover] settings), dest (smtp-sink), client (lab/sender.py at
# 40 msg/s, trying main then backup like an MX client).
#
# 1. Kills: the primary's host dies (every process, kill -9: lab_crash) while
#    mail flows. From the standby's side:
#      detect  = death -> the standby's decision "primary down" (its log)
#      promote = that decision -> its SMTP service answers (EHLO, polled every
#                20 ms from the client host)
#      rto     = death -> SMTP answers again
#    The dead node's mailtwind is then restarted: it must rejoin as standby
#    (it learns the newer epoch, sets its queue aside and hands over what
#    only it had), and the next kill hits the other node. KILLS kills (full
#    20, quick 8).
# 2. Accounting: every message the client got a 250 for (from either node)
#    is looked up at the sink by Message-ID: lost, or delivered twice.
# 3. Jitter: not measured on this machine - its kernel has no sch_netem
#    (false_failovers=NA; see docs/benchmarks.md).
# Switchover and failback are not built yet: their pauses are NA.
#
# Last line: RESULT kills=N rto_p50_s=.. rto_p99_s=.. detect_p99_s=..
#   promote_p99_s=.. switchover_pause_s=NA failback_pause_s=NA
#   false_failovers=NA lost=N duplicated=N
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
export MT_FAILOVER=auto MT_MANAGE=true

QUICK=0
for arg in "$@"; do
	case $arg in
	--quick) QUICK=1 ;;
	*) echo "usage: bench/run failover [--quick]" >&2; exit 2 ;;
	esac
done
if ((QUICK)); then MODE=quick KILLS=8; else MODE=full KILLS=20; fi
KILLS=${BENCH_KILLS:-$KILLS}
[[ -x $MAILTWIN_BIN/mailtwind && -x $MAILTWIN_BIN/mailtwin ]] ||
	{ echo "failover: no mailtwind/mailtwin in $MAILTWIN_BIN (build first)" >&2; exit 1; }

lab_init bench-failover
mkdir -p "$LAB_DIR/bin"
cp "$MAILTWIN_BIN/mailtwind" "$MAILTWIN_BIN/mailtwin" "$LAB_DIR/bin/"
MAILTWIN_BIN=$LAB_DIR/bin
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
bench_log "mode $MODE: $KILLS kills; defaults: $(grep -E '^(check_interval|fail_threshold|probe_timeout)' "$LAB_DIR/main/mailtwin.toml" | tr '\n' ' ')"

log=$LAB_DIR/accepted.log
lab_bg client "$LAB_DIR/sender.out" "$BENCH_PY" "$REPO/lab/sender.py" \
	--servers "$(lab_ip main),$(lab_ip backup)" --rcpt "a@sink.lab.test,b@sink.lab.test" \
	--rate 40 --log "$log" --stop-file "$LAB_DIR/stop" --max-seconds 3600 >/dev/null

ha_get() {  # ha_get HOST KEY: a field of status.ha
	"$MAILTWIN_BIN/mailtwin" --socket "$LAB_DIR/$1/mailtwin/control.sock" status --json 2>/dev/null |
		"$BENCH_PY" -c 'import json,sys; print(json.load(sys.stdin)["ha"][sys.argv[1]])' "$2" 2>/dev/null
}
pair_ready() {  # pair_ready PRIMARY STANDBY: serving, replicating live, handover settled
	[[ $(mt_status "$1" role) == primary && $(mt_status "$1" state) == live &&
		$(mt_status "$2" role) == standby && $(ha_get "$2" handover_pending) == 0 &&
		$(ha_get "$1" postfix_running) == True ]]
}
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
declare -a RTO DET PRO
for ((k = 1; k <= KILLS; k++)); do
	lab_wait_for 60 pair_ready "$P" "$S" || {
		bench_log "kill $k: $P/$S not ready: $(mt "$P" status 2>&1 | head -5) / $(mt "$S" status 2>&1 | head -8)"
		exit 1
	}
	sleep 2  # mail flows through the pair
	t0=$EPOCHREALTIME
	lab_crash "$P"
	t_ok=$(lab_exec client "$BENCH_PY" "$REPO/lab/smtp_wait.py" "$(lab_ip "$S")" 25 30) || {
		bench_log "kill $k: $S did not accept mail within 30 s; its log:"
		tail -20 "$LAB_DIR/$S/mailtwind.log" >&2
		exit 1
	}
	t_det=$(log_time "$LAB_DIR/$S/mailtwind.log" "decide: primary down" "$t0")
	RTO+=("$(bench_sub "$t_ok" "$t0")")
	DET+=("$(bench_sub "${t_det:-$t_ok}" "$t0")")
	PRO+=("$(bench_sub "$t_ok" "${t_det:-$t_ok}")")
	bench_log "kill $k: $P died; $S accepts mail after $(bench_fmt "${RTO[-1]}" %.3f) s (detect $(bench_fmt "${DET[-1]}" %.3f) s + promote $(bench_fmt "${PRO[-1]}" %.3f) s)"
	mt_start "$P" >/dev/null  # it comes back and must rejoin as standby
	tmp=$P P=$S S=$tmp
done
lab_wait_for 60 pair_ready "$P" "$S" || bench_log "after the last kill, $S did not rejoin"

# Accounting.
touch "$LAB_DIR/stop"
sleep 3
drained() { (($(bench_queue_count "$P" "incoming active deferred maildrop") == 0)); }
lab_wait_for 120 drained || {
	bench_log "$P still has $(bench_queue_count "$P") messages queued: $(cd "$LAB_DIR/$P/spool" && find incoming active deferred maildrop -type f | head -5 | tr '\n' ' ')"
	[[ -z ${BENCH_PAUSE:-} ]] || { bench_log "lab kept $BENCH_PAUSE s: $LAB_DIR"; sleep "$BENCH_PAUSE"; }
}
sleep 1
lab_sink_rcpts "$SINK" | awk '{print $1}' | sort >"$LAB_DIR/delivered"
awk '{gsub(/[<>]/, "", $2); print $2}' "$log" | sort -u >"$LAB_DIR/accepted"
ACCEPTED=$(wc -l <"$LAB_DIR/accepted")
LOST=$(comm -23 "$LAB_DIR/accepted" <(sort -u "$LAB_DIR/delivered") | wc -l)
DUPS=$(comm -12 "$LAB_DIR/accepted" <(uniq -d "$LAB_DIR/delivered") | wc -l)
bench_log "$ACCEPTED messages answered 250 over $KILLS kills: $LOST lost, $DUPS delivered twice ($(tail -1 "$LAB_DIR/sender.out" 2>/dev/null))"

pct() { "$BENCH_PY" -c '
import statistics, sys
q = float(sys.argv[1]); v = sorted(float(x) for x in sys.argv[2:])
# nearest-rank percentile
import math
print(f"{v[max(0, math.ceil(q * len(v)) - 1)]:.3f}")' "$@"; }
RTO50=$(pct 0.5 "${RTO[@]}")
RTO99=$(pct 0.99 "${RTO[@]}")
DET99=$(pct 0.99 "${DET[@]}")
PRO99=$(pct 0.99 "${PRO[@]}")
bench_log "rto p50 $RTO50 s, p99 $RTO99 s (target <= 2 s: $(bench_verdict "$RTO99" '<=' 2)); detect p99 $DET99 s; promote p99 $PRO99 s"
bench_log "lost $LOST (target 0: $(bench_verdict "$LOST" '<=' 0)); duplicated $DUPS"
echo "RESULT kills=$KILLS rto_p50_s=$RTO50 rto_p99_s=$RTO99 detect_p99_s=$DET99 promote_p99_s=$PRO99 switchover_pause_s=NA failback_pause_s=NA false_failovers=NA lost=$LOST duplicated=$DUPS"
