# shellcheck shell=bash
#
# lib.sh: helpers shared by the benchmarks in bench/.  Source it after
# lab/lab.sh and lab/mailtwin.sh.
#
#   bench_log MSG...                 progress line on stderr, with the elapsed time
#   bench_now                        seconds since the epoch (float, µs)
#   bench_sub A B                    A - B for floats (prints with 6 decimals)
#   bench_calc EXPR                  evaluate a Python arithmetic expression
#   bench_args NAME ARGS...          the options of bench/run NAME: sets QUICK (1 with
#                                    --quick, else 0); anything else: usage, exit 2
#   bench_product_failover           the product's default [failover] settings for
#                                    mt_config (MT_CHECK_INTERVAL...), not the lab's
#   bench_lab_init NAME              lab_init NAME, then run private copies of
#                                    mailtwind and mailtwin ($LAB_DIR/bin, which
#                                    MAILTWIN_BIN then names): a rebuild during a run
#                                    cannot mix two versions in one report
#   bench_private_bin                that copy alone, for a lab made otherwise
#                                    (e.g. by tests/lab/lib.sh's pair_setup)
#   bench_mt_wipe HOST               remove HOST's mailtwind state and mirror (stopped)
#   bench_mt_wait_idle MAIN [T]      wait until MAIN's link is live and every sent
#                                    frame is acknowledged (sent_seq == acked_seq);
#                                    BENCH_IDLE_AT: when the status said so (the
#                                    end of the wait if it never did)
#   bench_wait_queue HOST QUEUES N [T]   wait (polling at 20 Hz) until
#                                    lab_postfix_queued HOST QUEUES == N
#   bench_sent_count HOST            "status=sent" lines in HOST's maillog
#   bench_stats V...                 "median min max" of the values
#   bench_verdict VALUE OP TARGET    PASS or MISS (OP is >= or <=; NA gives NA)
#   bench_field LINE KEY             KEY's value out of a "k=v k=v" line
#   bench_ratio A B [FMT]            A / B, printf FMT (default %.3f); "NA" if either is NA or B is 0
#   bench_diff A B [FMT]             A - B, printf FMT (default %.2f); "NA" if either is NA or empty
#   bench_fmt X [FORMAT]             printf FORMAT (default %.1f) of X ("NA" if X is NA or empty)
#   bench_rm_files DIR...            delete every file under DIR..., 8 at a time: on
#                                    this disk (ext4, mounted with discard, no
#                                    journal) each unlink waits for a discard, and
#                                    a serial rm -rf of 200 000 files takes minutes
#   bench_cpu_busy SECONDS           % of all CPUs busy over SECONDS (/proc/stat);
#                                    taken while the lab is idle, it shows what
#                                    the rest of the machine is using
#
# The daemons and their status come from lab/mailtwin.sh: mt_start [--timeout
# T] HOST, mt_stop HOST, mt_json HOST [PATH...] (a status snapshot, or fields
# of it), lab_json JSON PATH... (fields of a snapshot, or of any JSON);
# queue counts from lab/lab.sh: lab_postfix_queued HOST [QUEUES].

BENCH_T0=${BENCH_T0:-$EPOCHREALTIME}
# Debian's python3, not a shim in PATH that costs 0.2 s per start (lab.sh).
# (powercut.sh sources this file without lab.sh.)
BENCH_PY=${BENCH_PY:-${LAB_PY:-$(if [[ -x /usr/bin/python3 ]]; then echo /usr/bin/python3; else command -v python3; fi)}}

bench_now() { echo "$EPOCHREALTIME"; }

# bench_args NAME [ARGS...]: QUICK=1 for --quick; BENCH_FLAGS names the
# benchmark's own flags ("--silent --vip"), each found in ARGS set to 1 in
# the associative array BENCH_OPT. Anything else: usage, exit 2.
bench_args() {
	local name=$1 arg flags=" ${BENCH_FLAGS:-} " usage="[--quick]"
	shift
	QUICK=0
	declare -gA BENCH_OPT=()
	for arg in ${BENCH_FLAGS:-}; do usage+=" [$arg]"; done
	for arg in "$@"; do
		if [[ $arg == --quick ]]; then
			QUICK=1
		elif [[ $arg == --* && $flags == *" $arg "* ]]; then
			BENCH_OPT[$arg]=1
		else
			echo "usage: bench/run $name $usage" >&2
			exit 2
		fi
	done
}

bench_product_failover() {
	export MT_HEARTBEAT=100ms MT_PEER_TIMEOUT=1200ms MT_CHECK_INTERVAL=250ms MT_FAIL_THRESHOLD=3 \
		MT_PROBE_TIMEOUT=700ms
}

bench_lab_init() {
	lab_init "$1"
	bench_private_bin
}

bench_private_bin() {
	mkdir -p "$LAB_DIR/bin"
	cp "$MAILTWIN_BIN/mailtwind" "$MAILTWIN_BIN/mailtwin" "$LAB_DIR/bin/"
	MAILTWIN_BIN=$LAB_DIR/bin
}

bench_log() {
	local now=${EPOCHREALTIME/./} t0=${BENCH_T0/./}
	printf '[%7.1fs] %s\n' "$(((now - t0) / 100000))e-1" "$*" >&2
}

bench_calc() { "$BENCH_PY" -c "from math import *; print($1)"; }

bench_sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f\n", a - b }'; }

bench_mt_wipe() {
	rm -rf "$LAB_DIR/$1/mailtwin/state" "$LAB_DIR/$1/mirror"
}

# The time of the read is taken when mailtwin has answered, before python3
# parses it: the ~25 ms of its start are not part of what is measured
# (t3 - t2 in the replication benchmark was mailtwin's time plus a bash
# regex before).
_bench_mt_idle() {
	local json t
	local -a v
	json=$(mt_json "$1")
	t=$EPOCHREALTIME
	mapfile -t v < <(lab_json "$json" replication.state replication.sent_seq replication.acked_seq)
	[[ ${v[0]:-} == live && ${v[1]:-} == "${v[2]:-}" ]] || return 1
	BENCH_IDLE_AT=$t
}
bench_mt_wait_idle() {
	lab_wait_for "${2:-60}" _bench_mt_idle "$1" || { BENCH_IDLE_AT=$EPOCHREALTIME; return 1; }
}

_bench_queue_is() { (($(lab_postfix_queued "$1" "$2") == $3)); }
bench_wait_queue() {
	local host=$1 queues=$2 n=$3 timeout=${4:-120}
	# Poll at 20 Hz: finding a few hundred files costs ~1 ms.
	local deadline=$((${EPOCHREALTIME/./} + timeout * 1000000))
	until _bench_queue_is "$host" "$queues" "$n"; do
		((${EPOCHREALTIME/./} < deadline)) || {
			bench_log "$host: $(lab_postfix_queued "$host" "$queues") files in ${queues:-the queue}, waited for $n"
			return 1
		}
		sleep 0.05
	done
}

bench_sent_count() {
	local n
	n=$(grep -c 'status=sent' "$LAB_DIR/$1/maillog" 2>/dev/null) || true
	echo "${n:-0}"
}

bench_stats() {
	"$BENCH_PY" -c '
import statistics, sys
v = [float(x) for x in sys.argv[1:]]
print(f"{statistics.median(v):.6g} {min(v):.6g} {max(v):.6g}")' "$@"
}

bench_verdict() {
	local value=$1 op=$2 target=$3
	[[ $value == NA || -z $value ]] && { echo NA; return; }
	if awk -v v="$value" -v t="$target" -v op="$op" \
		'BEGIN { exit !((op == ">=") ? (v >= t) : (v <= t)) }'; then
		echo PASS
	else
		echo MISS
	fi
}

bench_field() { if [[ " $1 " =~ [[:space:]]$2=([^[:space:]]*) ]]; then echo "${BASH_REMATCH[1]}"; fi; }
bench_ratio() { awk -v a="$1" -v b="$2" -v f="${3:-%.3f}" 'BEGIN { if (a != "NA" && b != "NA" && b > 0) printf f "\n", a / b; else print "NA" }'; }

# bench_diff A B [FORMAT]: A - B, NA if either is missing.
bench_diff() { awk -v a="$1" -v b="$2" -v f="${3:-%.2f}" 'BEGIN { if (a != "NA" && a != "" && b != "NA" && b != "") printf f "\n", a - b; else print "NA" }'; }
bench_fmt() { awk -v a="$1" -v f="${2:-%.1f}" 'BEGIN { if (a == "NA" || a == "") print "NA"; else printf f "\n", a }'; }

bench_cpu_busy() {
	local a b
	a=$(head -1 /proc/stat)
	sleep "$1"
	b=$(head -1 /proc/stat)
	# cpu user nice system idle iowait irq softirq steal ...
	awk -v a="$a" -v b="$b" 'BEGIN {
		n = split(a, x); split(b, y)
		for (i = 2; i <= n; i++) { d = y[i] - x[i]; tot += d; if (i == 5 || i == 6) idle += d }
		printf "%.0f\n", (tot > 0) ? 100 * (tot - idle) / tot : 0
	}'
}

bench_rm_files() {
	find "$@" -type f -print0 2>/dev/null | xargs -0 -r -P 8 -n 1000 rm -f
}

# bench_pct Q VALUES...: the nearest-rank Q quantile (0.5, 0.99) of VALUES,
# with 3 decimals; NA when there are none.
bench_pct() { "$BENCH_PY" -c '
import math, sys
q = float(sys.argv[1]); v = sorted(float(x) for x in sys.argv[2:])
print(f"{v[max(0, math.ceil(q * len(v)) - 1)]:.3f}" if v else "NA")' "$@"; }

# bench_pair_ready PRIMARY STANDBY: PRIMARY serves (Postfix running) and
# replicates live to STANDBY, whose handed-over queue is settled.
bench_pair_ready() {
	[[ $(mt_json "$1" role replication.state ha.postfix_running) == $'primary\nlive\nTrue' &&
		$(mt_json "$2" role ha.handover_pending) == $'standby\n0' ]]
}
