#!/bin/bash
#
# bench/run mx [--quick] [--silent] [--vip]: what senders on the Internet feel when the primary
# dies. Mail comes by MX from a real sending Postfix that keeps Postfix's
# DEFAULT retry settings (queue_run_delay and minimal_backoff_time 300 s,
# maximal_backoff_time 4000 s), and is counted at the destination.
#
# Lab (tests/lab/lib.sh: pair_setup, mx_setup): sender (Postfix, delivers by
# MX), dns (dnsmasq: the domains have MX main 10, backup 20), main, backup,
# dest (smtp-sink). Two setups, ROUNDS rounds each (full 3, quick 1), every
# round in a new lab:
#   mailtwin  main and backup are a mailtwin pair: gate on (sync), failover
#             auto, the product's default [failover] settings;
#   classic   the classic backup MX: main and backup are plain Postfix, both
#             serving; backup relays what it gets to the sink, and what main
#             had queued stays on main.
# A round: lab/sender.py hands 20 messages a second to the sender's Postfix,
# half for sink.lab.test, half for slow.lab.test, whose server (smtp-sink -w 1)
# waits 1 s before it answers DATA: main's queue holds mail in flight, as a
# real server's does (with an instant sink it would be empty at all times,
# and a classic backup MX would strand nothing). After 5 s main's host dies
# (lab_crash: every process, kill -9; with --silent, lab_silence: no RST, no
# ICMP, its processes frozen, so the sender's connections to it hang); the
# stream goes on for 5 s more, then stops. The round waits until the
# sender's queue is empty (drain_s: from the kill; at most 20 min) and the
# surviving node has delivered everything, then counts (lab_mx_account):
#   lost             accepted by the sender, never at the sink (in classic:
#                    stranded on the dead main)
#   duplicated       at the sink more than once
#   refused_both     the sender's delivery attempts that every MX refused
#   sender_deferred  messages the sender deferred at least once: each waits
#                    for its retry (300 s at least, with the defaults)
#   dup_lost250      duplicated, and the sender had lost the 250 of a queued
#                    copy ("may be sent more than once"): what the gate's
#                    dedup answers (docs/gate.md); target 0
#   dup_lost250_gap  of those, the ones whose fingerprint never reached the
#                    standby (before the gate's tokens: the node died after
#                    queueing, before its gate read the queue ID)
#   dup_other        duplicated for another reason: one queued copy went
#                    out twice (dup_sources): dup_done_lag, the dying main
#                    finished the delivery (status=sent logged for each copy)
#                    but its done mark never reached backup; dup_inflight,
#                    the destination took it while main waited for its 250
#                    (no relay can avoid these); each duplicate's source is
#                    in the bench log
# Sums over the rounds, drain_s as the median.
#
# Last line: RESULT kills=N kill=crash|silent mx=hosts|vip lost=N duplicated=N dup_lost250=N dup_lost250_gap=N dup_other=N
#   dup_inflight=N dup_done_lag=N refused_both=N
#   sender_deferred=N drain_s_p50=.. classic_drain_s_p50=.. drain_gap_s=..
#   (mailtwin's median minus classic's; target <= 2) classic_lost=N
#   classic_duplicated=N classic_refused_both=N classic_sender_deferred=N
set -euo pipefail
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../tests/lab/lib.sh
. "$BENCH/../tests/lab/lib.sh"
# shellcheck source=lib.sh
. "$BENCH/lib.sh"
export MT_FAILOVER=auto MT_MANAGE=true
bench_product_failover
# Half the mail is for slow.lab.test, whose server takes 1 s before it
# answers DATA: so main's queue holds mail in flight, as a real one does.
export SLOW_SECONDS=1
# --silent: main dies silently (lab_silence: its cable cut and every
# process frozen, as at a power loss) instead of by kill -9, whose kernel
# refuses at once.
# --vip: the pair's MX 10 is its service address ([vip] $LAB_NET.100,
# held by the primary: mx.lab.test), MX 20 backup's own address; the
# classic setup keeps main 10, backup 20.
BENCH_FLAGS="--silent --vip" bench_args mx "$@"
KILL=crash
[[ -z ${BENCH_OPT[--silent]:-} ]] || KILL=silent
VIA_VIP=${BENCH_OPT[--vip]:-0}
ROUNDS=$((QUICK ? 1 : 3))
ROUNDS=${BENCH_ROUNDS:-$ROUNDS}
[[ -x $MAILTWIN_BIN/mailtwind && -x $MAILTWIN_BIN/mailtwin ]] ||
	{ echo "mx: no mailtwind/mailtwin in $MAILTWIN_BIN (build first)" >&2; exit 1; }

# round MODE K: one kill in a new lab; prints lab_mx_account's line plus
# drain_s=.. (stdout), progress on stderr.
round() {
	local mode=$1 k=$2 t0 line drain
	# The classic backup MX is plain Postfix on port 25: no relay there.
	# (MX_RELAY=off measures the pair as it was before the relay.)
	local relay=${MX_RELAY:-on}
	[[ $mode == classic ]] && relay=off
	MT_RELAY=$relay pair_setup "bench-mx-$mode"
	local mx="main:10 backup:20"
	if ((VIA_VIP)) && [[ $mode == mailtwin ]]; then
		export MT_VIP=$LAB_NET.100/24
		MT_RELAY=$relay mt_config main primary backup
		MT_RELAY=$relay mt_config backup standby main
		mx="mx=${MT_VIP%/*}:10 backup:20"
	fi
	bench_private_bin
	MX_RECORDS=$mx mx_setup  # Postfix's default retry settings
	if [[ $mode == mailtwin ]]; then
		mt_gate main
		mt_gate backup
		pair_start
	else
		lab_postfix_start main
		lab_postfix_start backup
	fi
	start_sender 20 "a@sink.lab.test,b@slow.lab.test" 127.0.0.1 sender
	sleep 5
	t0=$EPOCHREALTIME
	if [[ $KILL == silent ]]; then lab_silence main; else lab_crash main; fi
	if [[ $mode == mailtwin ]]; then
		took_over() { mt_role_is backup primary 2; }
		lab_wait_for 20 took_over || fail "$mode $k: backup did not take over"
		bench_log "$mode $k: main killed ($KILL); backup primary after $(bench_fmt "$(bench_sub "$EPOCHREALTIME" "$t0")" %.2f) s"
	else
		bench_log "$mode $k: main killed ($KILL); backup serves all along"
	fi
	sleep 5
	touch "$LAB_DIR/stop"
	lab_wait_for 1200 lab_postfix_empty sender ||
		fail "$mode $k: the sender still holds $(lab_postfix_queued sender) messages 20 min after the kill"
	drain=$(bench_fmt "$(bench_sub "$EPOCHREALTIME" "$t0")" %.1f)
	settle backup >&2
	lab_mx_account "$log" sender "$SINK_OK" "$SINK_SLOW" >/dev/null
	dup_sources sender "$SINK_OK" "$SINK_SLOW"
	while read -r dup; do bench_log "$mode $k: duplicate: $dup"; done <"$LAB_DIR/dup_sources"
	line="$MX_ACCOUNT dup_lost250=$DUP_LOST250 dup_lost250_gap=$DUP_LOST250_GAP dup_other=$DUP_OTHER dup_inflight=$DUP_INFLIGHT dup_done_lag=$DUP_DONE_LAG drain_s=$drain"
	bench_log "$mode $k: $line"
	echo "$line"
}

declare -A SUM
declare -a DRAIN CDRAIN
for ((k = 1; k <= ROUNDS; k++)); do
	for mode in mailtwin classic; do
		line=$(round "$mode" "$k") || { bench_log "$mode $k failed: $line"; exit 1; }
		for key in lost duplicated dup_lost250 dup_lost250_gap dup_other dup_inflight dup_done_lag refused_both sender_deferred; do
			SUM[$mode.$key]=$((${SUM[$mode.$key]:-0} + $(bench_field "$line" "$key")))
		done
		if [[ $mode == mailtwin ]]; then DRAIN+=("$(bench_field "$line" drain_s)"); else CDRAIN+=("$(bench_field "$line" drain_s)"); fi
	done
done
p50() { bench_stats "$@" | cut -d' ' -f1; }
bench_log "mailtwin: drain $(bench_stats "${DRAIN[@]}") s (median min max); classic backup MX: $(bench_stats "${CDRAIN[@]}") s"
bench_log "mailtwin: lost ${SUM[mailtwin.lost]} (target 0: $(bench_verdict "${SUM[mailtwin.lost]}" '<=' 0)), duplicated ${SUM[mailtwin.duplicated]}; classic: lost ${SUM[classic.lost]}, duplicated ${SUM[classic.duplicated]}"
# Targets (issue 14): no attempt refused by both MX hosts, no message
# deferred by the sender, and the sender's queue empty within 2 s of the
# classic backup MX's time.
gap=$(bench_fmt "$(bench_sub "$(p50 "${DRAIN[@]}")" "$(p50 "${CDRAIN[@]}")")" %.1f)
bench_log "targets: refused_both ${SUM[mailtwin.refused_both]} ($(bench_verdict "${SUM[mailtwin.refused_both]}" '<=' 0)), sender_deferred ${SUM[mailtwin.sender_deferred]} ($(bench_verdict "${SUM[mailtwin.sender_deferred]}" '<=' 0)), drain gap to classic $gap s ($(bench_verdict "$gap" '<=' 2))"
echo "RESULT kills=$ROUNDS kill=$KILL mx=$( ((VIA_VIP)) && echo vip || echo hosts) lost=${SUM[mailtwin.lost]} duplicated=${SUM[mailtwin.duplicated]}" \
	"dup_lost250=${SUM[mailtwin.dup_lost250]} dup_lost250_gap=${SUM[mailtwin.dup_lost250_gap]} dup_other=${SUM[mailtwin.dup_other]}" \
	"dup_inflight=${SUM[mailtwin.dup_inflight]} dup_done_lag=${SUM[mailtwin.dup_done_lag]}" \
	"refused_both=${SUM[mailtwin.refused_both]} sender_deferred=${SUM[mailtwin.sender_deferred]}" \
	"drain_s_p50=$(p50 "${DRAIN[@]}") classic_drain_s_p50=$(p50 "${CDRAIN[@]}") drain_gap_s=$gap" \
	"classic_lost=${SUM[classic.lost]} classic_duplicated=${SUM[classic.duplicated]}" \
	"classic_refused_both=${SUM[classic.refused_both]} classic_sender_deferred=${SUM[classic.sender_deferred]}"
