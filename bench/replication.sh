#!/bin/bash
#
# replication.sh: what mailtwind's replication costs and how far behind it is,
# against plain Postfix and against the paper's rsync-at-each-transition method.
# Run as root:  bench/run replication [--quick]     (docs/benchmarks.md)
#
# Everything runs in one lab (lab/lab.sh): hosts main, backup (Postfix +
# mailtwind, relaying to dest), qmain, qbackup (a main/backup pair whose main
# relays to a dead port, so mail stays deferred), big, bigsb (a pair whose main
# holds all mail: header_checks = static:HOLD), dest (smtp-sink on :25, nothing
# on :2526) and client (smtp-source, paced_send.py).  The sink does not write
# messages to disk: the destination is not what we measure.
#
# 1. Throughput.  smtp-source -s 20 -l 4096 -m N from client to main.
#    msgs/s = N / (start of smtp-source -> main's queue empty), checked against
#    the maillog (N more "status=sent").  Queue empty means every message was
#    delivered to the sink and removed.  Rounds alternate plain Postfix
#    (mailtwind not running) and Postfix with the mailtwind pair live
#    (started fresh for each round, not timed); medians are reported with
#    min..max.  async_ratio = median(mailtwin) / median(plain).  In the full
#    run N is sized from a warm-up so that one plain round lasts ~15 s.
# 2. Lag at a steady 200 msg/s (bench/paced_send.py, 4 threads, 4 KB, 30 s;
#    10 s quick), fresh daemons: lag_p50_ms / lag_p99_ms from the primary's
#    status (per committed message: file ctime on the primary -> ack of the
#    frame that made it durable on the standby).
#    2b. The disk's floor for that lag: plain Postfix takes the same paced
#    load while bench/fsync_floor.py makes, at the same rate, the least any
#    replica must do per new message (4 KB write, fsync, rename, directory
#    fsync) in the standby's filesystem: disk_floor_p99_ms, and
#    disk_floor_serial_p99_ms counted from when each write was due (a write
#    queued behind a slow one counts its wait, as a change queued behind a
#    slow commit on the standby does).
# 3. CPU: the daemons' cpu_ms (getrusage of each mailtwind) before and after
#    the run of 2, per 1000 messages sent; primary + standby = cpu_ms_per_1000.
# 4. rsync baseline.  On qmain, with 1 000 and then 10 000 messages deferred
#    (each with its defer log), bench/rsync_loop.py runs `rsync -a --delete`
#    of the queue directories to a directory of qbackup after each batch of
#    inotify events (coalescing what arrives during a run), while 200 more
#    messages arrive at 20 msg/s (quick: 100).  Then the same workload with the
#    mailtwind pair (fresh daemons, caught up first).  CPU per change: the
#    rsync processes' CPU (wait4 rusage), resp. both daemons' cpu_ms delta,
#    divided by the number of changes mailtwind shipped for that workload
#    (sent_seq delta; the same Postfix work makes the same transitions for
#    both).  The paper runs rsync once per transition, which cannot keep up
#    here; what one run costs is reported beside (rsync_run_cpu_ratio_10k =
#    CPU per rsync run / mailtwind's CPU per change).  Lag: rsync = commit
#    event (chmod 0700 in incoming/) -> end of the first rsync started after
#    it; mailtwind = its lag_p50_ms.  The ratios use the 10 000 values and p50
#    lags.
# 5. Initial sync (full run only).  100 000 messages held on big, mirror empty,
#    standby started; time from launching the primary until its state is live
#    AND the standby's mirror_files = 100000.
#
# Around the measurements: the run uses a private copy of build/apps (a rebuild
# during the run cannot mix versions); it prints how busy the machine's CPUs
# are outside the idle lab at the start and the end (other work on this
# 2-CPU machine skews every number); before stopping each mailtwind pair it
# checks that both daemons live and collects what they logged as warning or
# error; the daemons' logs are kept in /tmp/mailtwin-bench-MODE-TIME/ ($BENCH_OUT).
#
# The last line is machine-readable:
#   RESULT plain_msgs_per_s=.. async_ratio=.. lag_p50_ms=.. lag_p99_ms=..
#          cpu_ms_per_1000=.. rsync_cpu_ratio_10k=.. rsync_lag_ratio_10k=..
#          initial_sync_100k_s=.. disk_floor_p99_ms=.. disk_floor_serial_p99_ms=..
#          rsync_run_cpu_ratio_10k=.. done_lag_p99_ms=.. sat_done_lag_p99_ms=..
#          (the last five are context, not targets: done_lag_p99_ms, at
#          200 msg/s, and sat_done_lag_p99_ms, the median over the
#          throughput rounds, say how long after Postfix finished a delivery
#          the standby had its done mark or removal acknowledged: a failover
#          within that time delivers the message again)
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

bench_args replication "$@"

if ((QUICK)); then
	MODE=quick
	TP_ROUNDS=2        # plain/mailtwin pairs
	TP_MSGS=1000       # messages per round (fixed)
	LAG_SECS=10        # paced run at 200 msg/s
	FLOOR_SECS=10      # the disk's floor, at the same rate
	Q_MSGS=100         # messages added at Q_RATE in the rsync comparison
	INIT_SYNC=0
else
	MODE=full
	TP_ROUNDS=3
	TP_MSGS=           # sized from the warm-up
	LAG_SECS=30
	FLOOR_SECS=20
	Q_MSGS=200
	INIT_SYNC=1
fi
LAG_RATE=200
Q_RATE=20
Q_SIZES=(1000 10000)
INIT_N=100000
SOURCE_OPTS=(-s 20 -l 4096 -f source@client.lab.test -t rcpt@dest.lab.test)

for c in rsync inotifywait "$BENCH_PY"; do
	command -v "$c" >/dev/null || { echo "replication: missing command: $c" >&2; exit 1; }
done
[[ -x $MAILTWIN_BIN/mailtwind && -x $MAILTWIN_BIN/mailtwin ]] ||
	{ echo "replication: no mailtwind/mailtwin in $MAILTWIN_BIN (build first)" >&2; exit 1; }

OTHER_LABS_START=$(bash "$REPO/lab/lab.sh" list 2>/dev/null | grep -c 'owner=.*(live)' || true)

#
# The lab.
#
MT_BUILD="built $(date -u -r "$MAILTWIN_BIN/mailtwind" '+%Y-%m-%d %H:%M:%S UTC'), sha256 $(sha256sum <"$MAILTWIN_BIN/mailtwind" | cut -c1-12)"
bench_lab_init bench-repl
if ! "$MAILTWIN_BIN/mailtwind" --help >/dev/null || ! "$MAILTWIN_BIN/mailtwin" --help >/dev/null; then
	echo "replication: the copied binaries do not run (a build in progress?)" >&2
	exit 1
fi
MT_SOURCE="HEAD $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$REPO" diff --quiet HEAD -- src 2>/dev/null || echo ' + uncommitted changes in src/')"
lab_host main 1
lab_host backup 2
lab_host qmain 3
lab_host qbackup 4
lab_host big 5
lab_host bigsb 6
lab_host dest 9
lab_host client 20
lab_postfix_create main relay=dest
lab_postfix_create backup relay=dest
# Mail for qmain's relay is refused at once (nothing on dest:2526) and stays
# deferred; the long backoff keeps qmgr from retrying it during the run.
lab_postfix_create qmain relay=dest:2526 queue_run_delay=3600s \
	minimal_backoff_time=3600s maximal_backoff_time=4000s
lab_postfix_create qbackup relay=dest:2526
# big holds every message it accepts (hold/): a queue that stays put, filled
# at full speed.  (Disabling qmgr instead slows cleanup to ~20 msg/s here: it
# fails to trigger the missing qmgr for every message.)
lab_postfix_create big relay=dest header_checks=static:HOLD
lab_postfix_create bigsb relay=dest
mt_pki main backup qmain qbackup big bigsb
# Replication alone is measured here, without the gate (bench/gate.sh has it).
MT_DURABILITY=async
mt_config main primary backup
mt_config backup standby main
mt_config qmain primary qbackup
mt_config qbackup standby qmain
mt_config big primary bigsb
mt_config bigsb standby big

DEST_IP=$(lab_ip dest)
lab_bg dest "$LAB_DIR/sink.log" smtp-sink -u nobody "$DEST_IP:25" 1024 >/dev/null
lab_wait_port dest "$DEST_IP" 25 || exit 1
lab_postfix_start main
BUSY_START=$(bench_cpu_busy 2)
bench_log "machine CPU busy with the lab idle: $BUSY_START %"

# send HOST N: smtp-source, N messages to HOST.
send() { lab_source client "$(lab_ip "$1")" "${SOURCE_OPTS[@]}" -m "$2"; }

# paced HOST RATE ARGS...: paced_send.py to HOST; prints its summary line.
paced() {
	local host=$1 rate=$2
	shift 2
	lab_exec client "$BENCH_PY" "$BENCH/paced_send.py" --server "$(lab_ip "$host")" \
		--rate "$rate" --threads 4 --size 4096 --helo client.lab.test "$@"
}

# sent_since HOST BASE N: true once HOST's maillog has N more status=sent than BASE.
sent_since() { (($(bench_sent_count "$1") - $2 >= $3)); }
# queue_at_least HOST QUEUES N: true once HOST's QUEUES hold at least N files.
queue_at_least() { (($(lab_postfix_queued "$1" "$2") >= $3)); }

# delta J1 J0 PATH: PATH of status J1 minus PATH of status J0 ("NA" if either lacks it).
delta() {
	awk -v a="$(lab_json "$1" "$3")" -v b="$(lab_json "$2" "$3")" \
		'BEGIN { if (a == "" || b == "") print "NA"; else printf "%.3f\n", a - b }'
}

# mt_pair_start MAIN BACKUP [TIMEOUT]: standby first, then the primary; wait
# until the link is live and every frame acknowledged.
mt_pair_start() {
	local t=${3:-60} h
	for h in "$1" "$2"; do
		eval "MT_MARK_$h=$({ wc -l <"$LAB_DIR/$h/mailtwind.log"; } 2>/dev/null || echo 0)"
	done
	mt_start "$2" >/dev/null
	mt_start --timeout "$t" "$1" >/dev/null
	bench_mt_wait_idle "$1" "$t" || {
		bench_log "the $1 -> $2 link is not live and idle after $t s: $(mt_json "$1")"
		return 1
	}
}
mt_pair_stop() {
	mt_stop "$1"
	mt_stop "$2"
}

# mt_check_alive HOST: warn (and remember) if HOST's mailtwind died.
MT_TROUBLE=()
mt_check_alive() {
	local v="MT_PID_${1//-/_}"
	if [[ -n ${!v:-} ]] && ! kill -0 "${!v}" 2>/dev/null; then
		bench_log "WARNING: mailtwind on $1 is gone; its log ends with:"
		tail -5 "$LAB_DIR/$1/mailtwind.log" >&2
		MT_TROUBLE+=("mailtwind on $1 died")
		return 1
	fi
}

# mt_pair_check MAIN BACKUP WHAT: before stopping a pair, check that both
# daemons live and remember the warnings and errors they logged since
# mt_pair_start (a lost link, a resync...), for the report.
mt_pair_check() {
	local what=$3 h mark lines
	for h in "$1" "$2"; do
		mt_check_alive "$h" || true
		mark="MT_MARK_$h"
		lines=$(tail -n +$((${!mark:-0} + 1)) "$LAB_DIR/$h/mailtwind.log" 2>/dev/null |
			grep -E ' (warning|error|critical) ' || true)
		if [[ -n $lines ]]; then
			bench_log "WARNING: mailtwind on $h logged during $what:"
			head -5 <<<"$lines" >&2
			MT_TROUBLE+=("$what: $h logged $(wc -l <<<"$lines") warning/error line(s), first: $(head -1 <<<"$lines")")
		fi
	done
}

# per1000 X COUNT: X * 1000 / COUNT ("NA" if X is NA or COUNT is 0).
per1000() { awk -v x="$1" -v n="$2" 'BEGIN { if (x != "NA" && n > 0) printf "%.1f\n", x * 1000 / n; else print "NA" }'; }
# sum A B: A + B ("NA" if either is).
sum() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "NA" || b == "NA") print "NA"; else printf "%.1f\n", a + b }'; }

T_START=$(bench_now)
declare -A PHASE_S

#
# 1. Throughput, plain vs mailtwin.
#
# tp_round MODE: one round (MODE plain or mt); sets TP_RATE, and for mt also
# TP_LAG50, TP_LAG99, TP_CPU ("P+S": ms per 1000 messages of the primary and
# the standby), TP_DRAIN (s from queue empty to all frames acked) and
# TP_COMMIT (the standby's group commits: avg/max ms, and how many of them
# were a syncfs of the whole filesystem).
# done_lags JSON: the primary's done marks and removals, Postfix -> standby
# (replication.done_lag_*: how long a delivery the primary finished can be
# repeated after a failover), and its parts (docs/replication.md).
done_lags() {
	echo "done marks/removals to the standby: p50 $(bench_fmt "$(lab_json "$1" replication.done_lag_p50_ms)" %.2f) ms, p99 $(bench_fmt "$(lab_json "$1" replication.done_lag_p99_ms)" %.2f) ms ($(lab_json "$1" replication.done_lag_samples) samples; p99 of Postfix's write -> watcher $(bench_fmt "$(lab_json "$1" replication.done_read_p99_ms)" %.2f) ms, watcher -> link $(bench_fmt "$(lab_json "$1" replication.done_ship_p99_ms)" %.2f) ms)"
}

tp_round() {
	local mode=$1 n=$TP_MSGS j0m j0b j1m j1b
	if [[ $mode == mt ]]; then
		mt_pair_start main backup 30
		j0m=$(mt_json main)
		j0b=$(mt_json backup)
	fi
	local sent0 t0 t1 t2
	sent0=$(bench_sent_count main)
	t0=$(bench_now)
	send main "$n"
	t1=$(bench_now)
	bench_wait_queue main "" 0 300 || bench_log "WARNING: main's queue did not empty"
	t2=$(bench_now)
	lab_wait_for 10 sent_since main "$sent0" "$n" ||
		bench_log "WARNING: only $(($(bench_sent_count main) - sent0)) of $n logged as sent"
	TP_RATE=$(awk -v n="$n" -v a="$t0" -v b="$t2" 'BEGIN { printf "%.1f\n", n / (b - a) }')
	if [[ $mode == mt ]]; then
		local t3
		bench_mt_wait_idle main 120 || bench_log "WARNING: replication not idle 120 s after the queue emptied"
		t3=$BENCH_IDLE_AT
		mt_pair_check main backup "throughput round $r"
		j1m=$(mt_json main)
		j1b=$(mt_json backup)
		[[ $(lab_json "$j1b" replication.mirror_files) == 0 ]] ||
			bench_log "WARNING: the standby's mirror holds $(lab_json "$j1b" replication.mirror_files) messages; main's queue is empty"
		TP_LAG50=$(bench_fmt "$(lab_json "$j1m" replication.lag_p50_ms)" %.2f)
		TP_LAG99=$(bench_fmt "$(lab_json "$j1m" replication.lag_p99_ms)" %.2f)
		TP_DONE=$(done_lags "$j1m")
		TP_DONE99=$(bench_fmt "$(lab_json "$j1m" replication.done_lag_p99_ms)" %.2f)
		TP_CPU="$(per1000 "$(delta "$j1m" "$j0m" cpu_ms)" "$n" | cut -d. -f1)+$(per1000 "$(delta "$j1b" "$j0b" cpu_ms)" "$n" | cut -d. -f1)"
		TP_DRAIN=$(bench_sub "$t3" "$t2")
		TP_COMMIT="$(bench_fmt "$(lab_json "$j1b" replication.commit_ms_avg)" %.0f)/$(bench_fmt "$(lab_json "$j1b" replication.commit_ms_max)" %.0f)/$(lab_json "$j1b" replication.syncfs)"
		mt_pair_stop main backup
	fi
	bench_log "  $mode: $n msgs, smtp-source $(bench_fmt "$(bench_sub "$t1" "$t0")" %.2f) s, queue empty at $(bench_fmt "$(bench_sub "$t2" "$t0")" %.2f) s: $TP_RATE msgs/s"
	if [[ $mode == mt ]]; then bench_log "    lag p50/p99 $TP_LAG50/$TP_LAG99 ms; $TP_DONE"; fi
}

phase_t0=$(bench_now)
bench_log "1. throughput ($MODE): warm-up"
warm=$((QUICK ? 500 : 1000))
t0=$(bench_now)
send main "$warm"
bench_wait_queue main "" 0 120
WARM_RATE=$(awk -v n="$warm" -v a="$t0" -v b="$(bench_now)" 'BEGIN { printf "%.0f\n", n / (b - a) }')
if [[ -z $TP_MSGS ]]; then
	# ~15 s of plain load at the warm-up's rate, in steps of 500, between
	# 3 000 and 30 000.
	TP_MSGS=$(awk -v r="$WARM_RATE" 'BEGIN { n = int(r * 15 / 500 + 1) * 500; if (n < 3000) n = 3000; if (n > 30000) n = 30000; print n }')
fi
bench_log "  warm-up: $warm msgs at $WARM_RATE msgs/s; rounds of $TP_MSGS msgs"
TP_PLAIN=() TP_MT=() TP_LAG50S=() TP_LAG99S=() TP_DONE99S=() TP_CPUS=() TP_DRAINS=() TP_COMMITS=()
for ((r = 1; r <= TP_ROUNDS; r++)); do
	bench_log "1. throughput round $r/$TP_ROUNDS"
	tp_round plain
	TP_PLAIN+=("$TP_RATE")
	tp_round mt
	TP_MT+=("$TP_RATE")
	TP_LAG50S+=("$TP_LAG50")
	TP_LAG99S+=("$TP_LAG99")
	TP_DONE99S+=("$TP_DONE99")
	TP_CPUS+=("$TP_CPU")
	TP_DRAINS+=("$TP_DRAIN")
	TP_COMMITS+=("$TP_COMMIT")
done
read -r PLAIN_MED PLAIN_MIN PLAIN_MAX <<<"$(bench_stats "${TP_PLAIN[@]}")"
read -r MT_MED MT_MIN MT_MAX <<<"$(bench_stats "${TP_MT[@]}")"
ASYNC_RATIO=$(bench_ratio "$MT_MED" "$PLAIN_MED")
read -r SAT_DONE99 _ <<<"$(bench_stats "${TP_DONE99S[@]}")"
PHASE_S[1]=$(bench_sub "$(bench_now)" "$phase_t0")

#
# 2 + 3. Lag and CPU at a steady 200 msg/s.
#
phase_t0=$(bench_now)
bench_log "2. lag at $LAG_RATE msg/s for $LAG_SECS s"
mt_pair_start main backup 30
j0m=$(mt_json main)
j0b=$(mt_json backup)
PACED_LAG=$(paced main "$LAG_RATE" --duration "$LAG_SECS") || bench_log "WARNING: paced sender reported failures"
bench_log "  $PACED_LAG"
bench_wait_queue main "" 0 120 || bench_log "WARNING: main's queue did not empty"
bench_mt_wait_idle main 120 || bench_log "WARNING: replication not idle after the paced run"
mt_pair_check main backup "the lag run"
j1m=$(mt_json main)
j1b=$(mt_json backup)
LAG_N=$(bench_field "$PACED_LAG" sent)
LAG_P50=$(bench_fmt "$(lab_json "$j1m" replication.lag_p50_ms)" %.2f)
LAG_P99=$(bench_fmt "$(lab_json "$j1m" replication.lag_p99_ms)" %.2f)
LAG_SAMPLES=$(lab_json "$j1m" replication.lag_samples)
SHIP_P50=$(bench_fmt "$(lab_json "$j1m" replication.ship_p50_ms)" %.2f)
SHIP_P99=$(bench_fmt "$(lab_json "$j1m" replication.ship_p99_ms)" %.2f)
DONE_P50=$(bench_fmt "$(lab_json "$j1m" replication.done_lag_p50_ms)" %.2f)
DONE_P99=$(bench_fmt "$(lab_json "$j1m" replication.done_lag_p99_ms)" %.2f)
CPU_P=$(per1000 "$(delta "$j1m" "$j0m" cpu_ms)" "${LAG_N:-0}")
CPU_S=$(per1000 "$(delta "$j1b" "$j0b" cpu_ms)" "${LAG_N:-0}")
CPU_SUM=$(sum "$CPU_P" "$CPU_S")
LAG_FRAMES=$(bench_fmt "$(delta "$j1m" "$j0m" replication.sent_seq)" %.0f)
LAG_FSYNCS=$(bench_fmt "$(delta "$j1b" "$j0b" replication.fsyncs)" %.0f)
LAG_COMMITS=$(bench_fmt "$(delta "$j1b" "$j0b" replication.commits)" %.0f)
LAG_COMMIT_MS="$(bench_fmt "$(lab_json "$j1b" replication.commit_ms_avg)")/$(bench_fmt "$(lab_json "$j1b" replication.commit_ms_max)" %.0f)"
LAG_SYNCFS=$(lab_json "$j1b" replication.syncfs)
LAG_COMMIT_Q="$(bench_fmt "$(lab_json "$j1b" replication.commit_p50_ms)" %.2f)/$(bench_fmt "$(lab_json "$j1b" replication.commit_p99_ms)" %.2f)"
LAG_BATCH_Q="$(bench_fmt "$(lab_json "$j1b" replication.batch_p50_ms)" %.2f)/$(bench_fmt "$(lab_json "$j1b" replication.batch_p99_ms)" %.2f)"
LAG_RECYCLED=$(bench_fmt "$(delta "$j1b" "$j0b" replication.recycled_inodes)" %.0f)
bench_log "  lag p50 $LAG_P50 ms, p99 $LAG_P99 ms ($LAG_SAMPLES samples); cpu/1000 msgs: primary $CPU_P ms, standby $CPU_S ms"
bench_log "  $(done_lags "$j1m")"
mt_pair_stop main backup

# 2b. The disk's floor for that lag: the same paced load on plain Postfix,
# while bench/fsync_floor.py makes one durable 4 KB write per message
# (write, fsync, rename, directory fsync) beside backup's mirror.
bench_log "2b. the disk's floor: $LAG_RATE durable writes/s beside plain Postfix at $LAG_RATE msg/s for $FLOOR_SECS s"
: >"$LAB_DIR/floor.out"
lab_bg backup "$LAB_DIR/floor.out" "$BENCH_PY" "$BENCH/fsync_floor.py" --dir "$LAB_DIR/backup/fsync-floor" \
	--rate "$LAG_RATE" --seconds "$FLOOR_SECS" >/dev/null
PACED_FLOOR=$(paced main "$LAG_RATE" --duration "$FLOOR_SECS") || bench_log "WARNING: paced sender reported failures"
lab_wait_for 60 grep -q '^floor:' "$LAB_DIR/floor.out" || { bench_log "WARNING: fsync_floor.py printed no result"; cat "$LAB_DIR/floor.out" >&2; }
FLOOR_LINE=$(grep '^floor:' "$LAB_DIR/floor.out" || true)
FLOOR_P50=$(bench_field "$FLOOR_LINE" p50_ms)
FLOOR_P99=$(bench_field "$FLOOR_LINE" p99_ms)
FLOOR_SERIAL_P99=$(bench_field "$FLOOR_LINE" serial_p99_ms)
FLOOR_P50=${FLOOR_P50:-NA} FLOOR_P99=${FLOOR_P99:-NA} FLOOR_SERIAL_P99=${FLOOR_SERIAL_P99:-NA}
bench_log "  $FLOOR_LINE; sender: $PACED_FLOOR"
bench_wait_queue main "" 0 120 || bench_log "WARNING: main's queue did not empty"
lab_postfix_stop main
PHASE_S[2]=$(bench_sub "$(bench_now)" "$phase_t0")

#
# 4. rsync at each transition vs mailtwind, with a deferred queue.
#
phase_t0=$(bench_now)
lab_postfix_start qmain
declare -A RS_CPU RS_RUNS RS_RUN_P50 RS_LAG50 RS_LAG99 RS_LAGMEAN RS_COMMITS RS_OVERHEAD RS_BAD RS_BUSY MIRROR_CHECK
declare -A MT_QCPU MT_QCPU_P MT_QCPU_S MT_CHANGES MT_QLAG50 MT_QLAG99 MT_QSAMPLES MT_CATCHUP Q_AT_RS Q_AT_MT

# settle_qmain: wait until every new message on qmain is deferred, then 1.5 s
# more (> 3 rsync runs at 10 000) for the last transitions to be replicated
# by whichever method runs.
settle_qmain() {
	bench_wait_queue qmain "maildrop incoming active" 0 120 || bench_log "WARNING: qmain did not settle"
	sleep 1.5
}

for size in "${Q_SIZES[@]}"; do
	have=$(lab_postfix_queued qmain)
	bench_log "4. queue of $size: filling qmain ($have queued)"
	if ((size > have)); then
		send qmain $((size - have))
		settle_qmain
	fi
	Q_AT_RS[$size]=$(lab_postfix_queued qmain)

	bench_log "4. queue of ${Q_AT_RS[$size]}: rsync loop, $Q_MSGS msgs at $Q_RATE msg/s"
	summary=$LAB_DIR/rsync-$size.json ready=$LAB_DIR/rsync-$size.ready
	lab_bg qmain "$LAB_DIR/rsync-loop.log" "$BENCH_PY" "$BENCH/rsync_loop.py" \
		--spool "$LAB_DIR/qmain/spool" --dest "$LAB_DIR/qbackup/rsync-mirror" \
		--summary "$summary" --ready "$ready" >/dev/null
	loop_pid=$LAB_BG_PID
	lab_wait_for 120 test -e "$ready" || { bench_log "rsync loop did not start"; tail "$LAB_DIR/rsync-loop.log" >&2; exit 1; }
	out=$(paced qmain "$Q_RATE" --count "$Q_MSGS") || bench_log "WARNING: paced sender reported failures"
	bench_log "  $out"
	settle_qmain
	kill -TERM "$loop_pid"
	lab_wait_for 30 test -e "$summary" || { bench_log "rsync loop wrote no summary"; tail "$LAB_DIR/rsync-loop.log" >&2; exit 1; }
	lab_kill "$loop_pid"
	js=$(<"$summary")
	RS_CPU[$size]=$(awk -v c="$(lab_json "$js" rsync_cpu_s)" 'BEGIN { printf "%.1f\n", c * 1000 }')
	RS_RUNS[$size]=$(lab_json "$js" runs)
	RS_RUN_P50[$size]=$(bench_fmt "$(lab_json "$js" run_ms_p50)")
	RS_LAG50[$size]=$(bench_fmt "$(lab_json "$js" lag_ms_p50)")
	RS_LAG99[$size]=$(bench_fmt "$(lab_json "$js" lag_ms_p99)")
	RS_LAGMEAN[$size]=$(bench_fmt "$(lab_json "$js" lag_ms_mean)")
	RS_COMMITS[$size]=$(lab_json "$js" commits)
	RS_BAD[$size]=$(lab_json "$js" bad_exits)
	RS_BUSY[$size]=$(bench_fmt "$(lab_json "$js" busy)" %.2f)
	RS_OVERHEAD[$size]=$(awk -v a="$(lab_json "$js" loop_cpu_s)" -v b="$(lab_json "$js" inotify_cpu_s)" \
		'BEGIN { printf "%.1f\n", (a + b) * 1000 }')
	bench_log "  rsync: ${RS_RUNS[$size]} runs (p50 ${RS_RUN_P50[$size]} ms), ${RS_CPU[$size]} ms CPU, lag p50 ${RS_LAG50[$size]} ms over ${RS_COMMITS[$size]} commits"

	Q_AT_MT[$size]=$(lab_postfix_queued qmain)
	bench_log "4. queue of ${Q_AT_MT[$size]}: mailtwind, $Q_MSGS msgs at $Q_RATE msg/s"
	t0=$(bench_now)
	mt_pair_start qmain qbackup 300
	MT_CATCHUP[$size]=$(bench_fmt "$(bench_sub "$BENCH_IDLE_AT" "$t0")" %.2f)
	j0m=$(mt_json qmain)
	j0b=$(mt_json qbackup)
	out=$(paced qmain "$Q_RATE" --count "$Q_MSGS") || bench_log "WARNING: paced sender reported failures"
	bench_log "  $out"
	settle_qmain
	bench_mt_wait_idle qmain 60 || bench_log "WARNING: qmain's replication not idle"
	mt_pair_check qmain qbackup "the rsync comparison at $size"
	j1m=$(mt_json qmain)
	j1b=$(mt_json qbackup)
	MT_QCPU_P[$size]=$(bench_fmt "$(delta "$j1m" "$j0m" cpu_ms)")
	MT_QCPU_S[$size]=$(bench_fmt "$(delta "$j1b" "$j0b" cpu_ms)")
	MT_QCPU[$size]=$(sum "${MT_QCPU_P[$size]}" "${MT_QCPU_S[$size]}")
	MT_CHANGES[$size]=$(bench_fmt "$(delta "$j1m" "$j0m" replication.sent_seq)" %.0f)
	MT_QLAG50[$size]=$(bench_fmt "$(lab_json "$j1m" replication.lag_p50_ms)" %.2f)
	MT_QLAG99[$size]=$(bench_fmt "$(lab_json "$j1m" replication.lag_p99_ms)" %.2f)
	MT_QSAMPLES[$size]="$(lab_json "$j0m" replication.lag_samples)->$(lab_json "$j1m" replication.lag_samples)"
	# Sanity: the standby's mirror holds as many messages as qmain's queue.
	MIRROR_CHECK[$size]="$(lab_json "$j1b" replication.mirror_files)/$(lab_postfix_queued qmain)"
	bench_log "  mailtwind: caught up in ${MT_CATCHUP[$size]} s; ${MT_CHANGES[$size]} changes, ${MT_QCPU[$size]} ms CPU, lag p50 ${MT_QLAG50[$size]} ms"
	mt_pair_stop qmain qbackup
done
lab_postfix_stop qmain
# Per change: both divided by the changes mailtwind shipped for the workload.
rs_per_change() { bench_ratio "${RS_CPU[$1]}" "${MT_CHANGES[$1]}" %.3f; }
mt_per_change() { bench_ratio "${MT_QCPU[$1]}" "${MT_CHANGES[$1]}" %.4f; }
RSYNC_CPU_RATIO_10K=$(bench_ratio "$(rs_per_change 10000)" "$(mt_per_change 10000)")
RSYNC_LAG_RATIO_10K=$(bench_ratio "${RS_LAG50[10000]}" "${MT_QLAG50[10000]}")
# The paper runs rsync at each transition, without coalescing: one run per
# change.  What one run costs (its CPU / runs) is then rsync's CPU per change.
rs_per_run() { bench_ratio "${RS_CPU[$1]}" "${RS_RUNS[$1]}" %.1f; }
RSYNC_RUN_CPU_RATIO_10K=$(bench_ratio "$(rs_per_run 10000)" "$(mt_per_change 10000)")
PHASE_S[4]=$(bench_sub "$(bench_now)" "$phase_t0")

#
# 5. Initial sync of 100 000 held messages to an empty mirror.
#
INITIAL_SYNC=NA
if ((INIT_SYNC)); then
	phase_t0=$(bench_now)
	lab_postfix_start big
	bench_log "5. filling big with $INIT_N held messages"
	t0=$(bench_now)
	send big "$INIT_N"
	lab_wait_for 120 queue_at_least big hold "$INIT_N" ||
		bench_log "WARNING: big holds $(lab_postfix_queued big hold) of $INIT_N"
	FILL_S=$(bench_fmt "$(bench_sub "$(bench_now)" "$t0")")
	BIG_QUEUED=$(lab_postfix_queued big)
	bench_log "  $BIG_QUEUED queued in $FILL_S s; starting the standby, then the primary"
	bench_mt_wipe bigsb
	# shellcheck disable=SC2034  # read by mt_pair_check
	MT_MARK_big=0 MT_MARK_bigsb=0
	mt_start bigsb >/dev/null
	t0=$(bench_now)
	mt_start --timeout 600 big >/dev/null
	T_SOCKET=$(bench_sub "$(bench_now)" "$t0")
	T_LIVE='' T_MIRROR=
	deadline=$((${EPOCHREALTIME/./} + 900 * 1000000))
	while [[ -z $T_LIVE || -z $T_MIRROR ]]; do
		now=$(bench_now)
		[[ -z $T_LIVE && $(mt_json big replication.state) == live ]] && T_LIVE=$(bench_sub "$now" "$t0")
		[[ -z $T_MIRROR && $(mt_json bigsb replication.mirror_files) == "$BIG_QUEUED" ]] && T_MIRROR=$(bench_sub "$now" "$t0")
		((${EPOCHREALTIME/./} < deadline)) || { bench_log "WARNING: initial sync not done in 900 s"; break; }
		if ! mt_check_alive big || ! mt_check_alive bigsb; then break; fi
		sleep 0.2
	done
	if [[ -n $T_LIVE && -n $T_MIRROR ]]; then
		INITIAL_SYNC=$(awk -v a="$T_LIVE" -v b="$T_MIRROR" 'BEGIN { printf "%.1f\n", (a > b) ? a : b }')
	fi
	bench_mt_wait_idle big 300 || bench_log "WARNING: big's link not idle"
	T_IDLE=$(bench_sub "$BENCH_IDLE_AT" "$t0")
	SCAN_S=$(sed -n 's/.*scanned in \([0-9.]*\) s.*/\1/p' "$LAB_DIR/big/mailtwind.log" | tail -1)
	CATCHUP_S=$(bench_fmt "$(mt_json big replication.last_catchup_s)" %.2f)
	MIRROR_FILES=$(mt_json bigsb replication.mirror_files)
	mt_pair_check big bigsb "the initial sync"
	bench_log "  socket after $T_SOCKET s (scan ${SCAN_S:-?} s), live after ${T_LIVE:-never} s, mirror complete after ${T_MIRROR:-never} s, all acked after $T_IDLE s"
	mt_pair_stop big bigsb
	lab_postfix_stop big
	t0=$(bench_now)
	bench_rm_files "$LAB_DIR/big/spool" "$LAB_DIR/bigsb/mirror"
	bench_log "  deleted the 100 000 messages and their mirror in $(bench_fmt "$(bench_sub "$(bench_now)" "$t0")") s"
	PHASE_S[5]=$(bench_sub "$(bench_now)" "$phase_t0")
fi

BUSY_END=$(bench_cpu_busy 2)
OTHER_LABS_END=$(($(bash "$REPO/lab/lab.sh" list 2>/dev/null | grep -c 'owner=.*(live)' || true) - 1))
# Keep the daemons' logs (the lab directory goes with the lab), then remove
# the lab before the report.
OUT=${BENCH_OUT:-/tmp/mailtwin-bench-$MODE-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
for h in main backup qmain qbackup big bigsb; do
	if [[ -f $LAB_DIR/$h/mailtwind.log ]]; then cp "$LAB_DIR/$h/mailtwind.log" "$OUT/mailtwind-$h.log"; fi
done
cp "$LAB_DIR"/rsync-*.json "$OUT/" 2>/dev/null || true
t0=$(bench_now)
bench_rm_files "$LAB_DIR"/*/spool "$LAB_DIR"/*/mirror "$LAB_DIR"/*/rsync-mirror
lab_cleanup
bench_log "lab removed in $(bench_fmt "$(bench_sub "$(bench_now)" "$t0")") s"
T_TOTAL=$(bench_sub "$(bench_now)" "$T_START")
bench_log "done; machine CPU busy with the lab idle: $BUSY_END %"
#
# The report.
#
V_ASYNC=$(bench_verdict "$ASYNC_RATIO" '>=' 0.95)
V_LAG=$(bench_verdict "$LAG_P99" '<=' 5)
V_RSYNC=$(bench_verdict "$RSYNC_CPU_RATIO_10K" '>=' 50)
V_INIT=$(bench_verdict "$INITIAL_SYNC" '<=' 30)

cat <<EOT

mailtwin replication benchmark ($MODE) — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs
mailtwind $MT_BUILD; source $MT_SOURCE
other labs on this machine: $OTHER_LABS_START at start, $OTHER_LABS_END at end; CPU busy outside the idle lab: $BUSY_START % at start, $BUSY_END % at end

1. Throughput: smtp-source -s 20 -l 4096, $TP_MSGS msgs per round, main -> smtp-sink on dest
   msgs/s = N / (smtp-source start -> main's queue empty, N more status=sent in the maillog)
   round:                 $(for ((r = 1; r <= TP_ROUNDS; r++)); do printf '%9d' "$r"; done)
   plain Postfix:         $(printf '%9s' "${TP_PLAIN[@]}")    median $PLAIN_MED ($PLAIN_MIN..$PLAIN_MAX)
   with mailtwind:        $(printf '%9s' "${TP_MT[@]}")    median $MT_MED ($MT_MIN..$MT_MAX)
   async_ratio = $ASYNC_RATIO                                         target >= 0.95   $V_ASYNC
   at saturation, mailtwind rounds:
     lag p50 ms:          $(printf '%9s' "${TP_LAG50S[@]}")
     lag p99 ms:          $(printf '%9s' "${TP_LAG99S[@]}")
     done-mark lag p99 ms:$(printf '%9s' "${TP_DONE99S[@]}")   (a finished delivery's 'D' or removal, Postfix -> acked)
     CPU ms / 1000 msgs:  $(printf '%9s' "${TP_CPUS[@]}")   (primary+standby)
     acked s after empty: $(printf '%9.2f' "${TP_DRAINS[@]}")
     standby commits ms avg/max/syncfs: $(printf ' %s' "${TP_COMMITS[@]}")

2. Lag at $LAG_RATE msg/s, 4 KB, $LAG_SECS s (paced_send.py, 4 threads)
   sender: $PACED_LAG
   lag p50 = $LAG_P50 ms, p99 = $LAG_P99 ms over $LAG_SAMPLES samples        target p99 <= 5 ms   $V_LAG$(
	awk -v l="$(bench_field "$PACED_LAG" late_p99_ms)" 'BEGIN { if (l + 0 > 50) printf "\n   (the sender itself ran up to %s ms late: the machine was out of CPU during this run)", l }')
   of which on the primary (commit -> frame handed to the connection): p50 $SHIP_P50 ms, p99 $SHIP_P99 ms
   done marks and removals (Postfix's write -> acked): p50 $DONE_P50 ms, p99 $DONE_P99 ms
   on the standby, per ack (first change applied -> ack sent) p50/p99 $LAG_BATCH_Q ms; its commits alone p50/p99 $LAG_COMMIT_Q ms
     (the rest of the lag: network both ways, and changes waiting in the socket while a commit ran)
   the disk's floor (bench/fsync_floor.py: 4 KB write + fsync + rename + directory fsync at $LAG_RATE/s,
   beside plain Postfix taking $LAG_RATE msg/s, $FLOOR_SECS s): p50 $FLOOR_P50 ms, p99 $FLOOR_P99 ms;
   counted from when each write was due, so that a write queued behind a slow one
   counts its wait (the floor for one commit after another): p99 $FLOOR_SERIAL_P99 ms
     ($FLOOR_LINE)
   $LAG_FRAMES frames shipped; standby: $LAG_COMMITS commits (avg/max $LAG_COMMIT_MS ms; $LAG_SYNCFS of them a syncfs), $LAG_FSYNCS fsyncs, $LAG_RECYCLED new files on a recycled inode

3. mailtwind CPU per 1000 messages (same run)
   primary $CPU_P ms + standby $CPU_S ms = $CPU_SUM ms

4. rsync -a --delete at each transition (coalesced) vs mailtwind, deferred queue on qmain,
   $Q_MSGS more messages at $Q_RATE msg/s; CPU per change = CPU / changes mailtwind shipped
   queued   method      runs   CPU ms  changes  CPU/change ms   lag p50   lag p99  lag mean (ms)
EOT
for size in "${Q_SIZES[@]}"; do
	printf '   %-7s  %-9s %6s %8s %8s %14s %9s %9s %9s\n' \
		"${Q_AT_RS[$size]}" rsync "${RS_RUNS[$size]}" "${RS_CPU[$size]}" "${MT_CHANGES[$size]}" \
		"$(rs_per_change "$size")" "${RS_LAG50[$size]}" "${RS_LAG99[$size]}" "${RS_LAGMEAN[$size]}"
	printf '   %-7s  %-9s %6s %8s %8s %14s %9s %9s %9s\n' \
		"${Q_AT_MT[$size]}" mailtwind - "${MT_QCPU[$size]}" "${MT_CHANGES[$size]}" \
		"$(mt_per_change "$size")" "${MT_QLAG50[$size]}" "${MT_QLAG99[$size]}" -
done
cat <<EOT
   rsync: run p50 $(for s in "${Q_SIZES[@]}"; do printf '%s ms at %s, ' "${RS_RUN_P50[$s]}" "$s"; done)busy $(for s in "${Q_SIZES[@]}"; do printf '%s ' "${RS_BUSY[$s]}"; done)(1 = back to back), commits timed $(for s in "${Q_SIZES[@]}"; do printf '%s ' "${RS_COMMITS[$s]}"; done), failed runs $(for s in "${Q_SIZES[@]}"; do printf '%s ' "${RS_BAD[$s]}"; done)
          watcher overhead not counted above (python loop + inotifywait): $(for s in "${Q_SIZES[@]}"; do printf '%s ms ' "${RS_OVERHEAD[$s]}"; done)
   mailtwind: CPU primary/standby $(for s in "${Q_SIZES[@]}"; do printf '%s/%s ms ' "${MT_QCPU_P[$s]}" "${MT_QCPU_S[$s]}"; done); lag samples $(for s in "${Q_SIZES[@]}"; do printf '%s ' "${MT_QSAMPLES[$s]}"; done); caught up from start in $(for s in "${Q_SIZES[@]}"; do printf '%s s ' "${MT_CATCHUP[$s]}"; done)
              mirror_files/queued after the run: $(for s in "${Q_SIZES[@]}"; do printf '%s ' "${MIRROR_CHECK[$s]}"; done)
   rsync_cpu_ratio_10k = $RSYNC_CPU_RATIO_10K (rsync CPU / mailtwind CPU per change)    target >= 50   $V_RSYNC
   rsync once per transition, uncoalesced as in the paper: CPU per run $(for s in "${Q_SIZES[@]}"; do printf '%s ms at %s, ' "$(rs_per_run "$s")" "$s"; done)
     rsync_run_cpu_ratio_10k = $RSYNC_RUN_CPU_RATIO_10K (one rsync run / mailtwind CPU per change; such runs
     could not keep up with the $Q_RATE msg/s here: rsync_cpu_ratio_10k above is the one judged)
   rsync_lag_ratio_10k = $RSYNC_LAG_RATIO_10K (rsync lag p50 / mailtwind lag p50)

EOT
if ((INIT_SYNC)); then
	cat <<EOT
5. Initial sync: $BIG_QUEUED held messages on big (filled in $FILL_S s), empty mirror
   primary launched -> control socket $(bench_fmt "$T_SOCKET" %.2f) s (queue scan ${SCAN_S:-?} s) -> live $(bench_fmt "${T_LIVE:-NA}" %.2f) s;
   standby mirror_files = $MIRROR_FILES at $(bench_fmt "${T_MIRROR:-NA}" %.2f) s; all frames acked at $(bench_fmt "$T_IDLE" %.2f) s; last_catchup_s = $CATCHUP_S
   initial_sync_100k_s = $INITIAL_SYNC                                 target <= 30 s   $V_INIT

EOT
else
	echo "5. Initial sync of 100 000 messages: skipped (--quick)"
	echo
fi
echo "phases (s): $(for p in 1 2 4 5; do [[ -n ${PHASE_S[$p]:-} ]] && printf '%s=%.0f ' "$p" "${PHASE_S[$p]}"; done)total=$(bench_fmt "$T_TOTAL" %.0f)"
for t in "${MT_TROUBLE[@]}"; do echo "mailtwind trouble: $t"; done
echo "daemon logs kept in $OUT"
echo "RESULT plain_msgs_per_s=$PLAIN_MED async_ratio=$ASYNC_RATIO lag_p50_ms=$LAG_P50 lag_p99_ms=$LAG_P99 cpu_ms_per_1000=$CPU_SUM rsync_cpu_ratio_10k=$RSYNC_CPU_RATIO_10K rsync_lag_ratio_10k=$RSYNC_LAG_RATIO_10K initial_sync_100k_s=$INITIAL_SYNC disk_floor_p99_ms=$FLOOR_P99 disk_floor_serial_p99_ms=$FLOOR_SERIAL_P99 rsync_run_cpu_ratio_10k=$RSYNC_RUN_CPU_RATIO_10K done_lag_p99_ms=$DONE_P99 sat_done_lag_p99_ms=$SAT_DONE99"
