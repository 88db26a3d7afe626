#!/bin/bash
#
# bench/run vip [--quick] [--ipv6]: how long the service address ([vip]) answers
# nowhere when the primary dies, as its clients live it (issue 14, item 2).
#
# Lab: main and backup (Postfix + mailtwind, gate on, failover auto, the
# product's default [failover] settings), the service address
# $LAB_NET.100/24 following the primary role (Postfix listens on every
# address), dest (smtp-sink), client: lab/sender.py at 20 msg/s to the
# service address only (accounting), and for each kill two watchers
# (lab/smtp_watch.py): one on the service address, one on the standby's own
# address, each starting a connection every 20 ms (overlapping, 5 s each)
# for 8 s from just before the kill; and one client that connects once to
# the service address, 50 ms after the death, and waits 30 s, as a sending
# MTA's single connect does.
# Kills alternate: loud (kill -9 of every process: the dead host's kernel
# keeps its copy of the address and refuses) and silent (lab_silence: cable
# cut, processes frozen: SYNs vanish), KILLS of each (full 10, quick 3).
#   dark     = death -> first greeting through the service address
#   own      = death -> first greeting on the new primary's own address
#   extra    = dark - own: what moving the address adds (gratuitous ARP,
#              the order of the take-over's steps)
#   once_ok  = single-connect clients that got a greeting, and how long
#              after they started (a refused one
#              fails at once; a silent death's SYN is retransmitted after
#              1 s, 3 s, 7 s... and must reach the new holder)
#   refused  = attempts refused meanwhile (the old host's kernel)
#
# --ipv6: the service address is ${LAB_NET6}100/64 (every lab host has an
# IPv6 address too; the clients and watchers use IPv6; the announcement is
# an unsolicited neighbour advertisement instead of gratuitous ARP).
#
# Last line: RESULT family=4|6 kills=N dark_p50_s= dark_p99_s= silent_dark_p50_s=
#   silent_dark_p99_s= extra_p99_s= silent_extra_p99_s= once_ok=N/M
#   silent_once_ok=N/M silent_once_p50_s= refused_per_kill= lost= duplicated=
# Targets: extra_p99_s <= 0.2 (the address adds next to nothing to the
# failover), silent_once_ok = all, lost = 0.
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

BENCH_FLAGS="--ipv6" bench_args vip "$@"
FAMILY=4
[[ -z ${BENCH_OPT[--ipv6]:-} ]] || { FAMILY=6; export LAB_IPV6=1; }
if ((QUICK)); then MODE=quick KILLS=3; else MODE=full KILLS=10; fi
KILLS=${BENCH_KILLS:-$KILLS}
[[ -x $MAILTWIN_BIN/mailtwind && -x $MAILTWIN_BIN/mailtwin ]] ||
	{ echo "vip: no mailtwind/mailtwin in $MAILTWIN_BIN (build first)" >&2; exit 1; }

bench_lab_init bench-vip
lab_host main 1
lab_host backup 2
lab_host dest 9
lab_host client 20
# own HOST: HOST's own address in the service address's family.
if ((FAMILY == 6)); then
	export MT_VIP=${LAB_NET6}100/64
	own() { lab_ip6 "$1"; }
	v6conf=("inet_protocols = all" "mynetworks = 127.0.0.0/8, $LAB_NET.0/24, [${LAB_NET6}]/64")
	sender_vip="[${MT_VIP%/*}]"
else
	export MT_VIP=$LAB_NET.100/24
	own() { lab_ip "$1"; }
	v6conf=()
	sender_vip=${MT_VIP%/*}
fi
vip=${MT_VIP%/*}
for h in main backup; do
	lab_postfix_create "$h" relay=dest "inet_interfaces = all" "${v6conf[@]}"
done
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
has_vip() { lab_has_addr "$1" "$vip"; }
lab_wait_for 10 has_vip main || { bench_log "main does not hold $vip"; exit 1; }
bench_log "mode $MODE: $KILLS kills of each kind; service address $vip"

log=$LAB_DIR/accepted.log
lab_bg client "$LAB_DIR/sender.out" "$BENCH_PY" "$REPO/lab/sender.py" \
	--servers "$sender_vip" --rcpt "a@sink.lab.test,b@sink.lab.test" \
	--rate 20 --log "$log" --stop-file "$LAB_DIR/stop" --max-seconds 3600 >/dev/null

pair_ready() { bench_pair_ready "$@" && has_vip "$1" && ! has_vip "$2"; }

# after_kill FILE T0 first_ok|refused: of a watcher's attempts started at or
# after T0, the time of the first greeting (NA: none), or how many were
# refused.
after_kill() {
	awk -v t0="$2" -v what="$3" '$1 == "attempt" && $2 >= t0 {
		if ($4 == "ok" && (first == "" || $3 < first)) first = $3
		if ($4 == "refused") refused++
	} END {
		if (what == "refused") print refused + 0
		else if (first == "") print "NA"
		else printf "%.6f\n", first
	}' "$1"
}

P=main S=backup
declare -a DARK SDARK EXTRA SEXTRA SONCE
ONCE_OK=0 SONCE_OK=0 REFUSED=0
for ((k = 1; k <= 2 * KILLS; k++)); do
	kind=$( ((k % 2)) && echo loud || echo silent)
	lab_wait_for 60 pair_ready "$P" "$S" || {
		bench_log "kill $k: $P/$S not ready: $(mt "$P" status 2>&1 | head -5) / $(mt "$S" status 2>&1 | head -8)"
		exit 1
	}
	sleep 2
	lab_bg client "$LAB_DIR/watch-vip-$k" "$BENCH_PY" "$REPO/lab/smtp_watch.py" "$vip" 25 8 >/dev/null
	wv=$LAB_BG_PID
	lab_bg client "$LAB_DIR/watch-own-$k" "$BENCH_PY" "$REPO/lab/smtp_watch.py" "$(own "$S")" 25 8 >/dev/null
	wo=$LAB_BG_PID
	sleep 0.2  # both watchers run
	if [[ $kind == loud ]]; then lab_crash "$P"; else lab_silence "$P"; fi
	# From the moment the death is complete (every process killed, or the
	# cable cut and every process frozen): attempts started earlier may
	# still have been served.
	t0=$EPOCHREALTIME
	lab_bg client "$LAB_DIR/watch-once-$k" "$BENCH_PY" "$REPO/lab/smtp_watch.py" "$vip" 25 0 \
		--once-after 50 >/dev/null
	w1=$LAB_BG_PID
	while kill -0 "$wv" 2>/dev/null || kill -0 "$wo" 2>/dev/null || kill -0 "$w1" 2>/dev/null; do sleep 0.2; done
	v=$(tail -1 "$LAB_DIR/watch-vip-$k") o=$(tail -1 "$LAB_DIR/watch-own-$k")
	v1=$(tail -1 "$LAB_DIR/watch-once-$k")
	# Only attempts started after the death count.
	tv=$(after_kill "$LAB_DIR/watch-vip-$k" "$t0" first_ok)
	to=$(after_kill "$LAB_DIR/watch-own-$k" "$t0" first_ok)
	[[ $tv != NA && $to != NA ]] || {
		bench_log "kill $k ($kind): no greeting within 8 s of the death: service address '$v', $S's own '$o'"
		tail -20 "$LAB_DIR/$S/mailtwind.log" >&2
		exit 1
	}
	dark=$(bench_sub "$tv" "$t0") own=$(bench_sub "$to" "$t0") extra=$(bench_sub "$tv" "$to")
	once=$(bench_field "$v1" once_outcome) once_at=$(bench_field "$v1" once_ok)
	refused=$(after_kill "$LAB_DIR/watch-vip-$k" "$t0" refused)
	REFUSED=$((REFUSED + refused))
	if [[ $kind == loud ]]; then
		DARK+=("$dark") EXTRA+=("$extra")
		[[ $once == ok ]] && ONCE_OK=$((ONCE_OK + 1))
	else
		SDARK+=("$dark") SEXTRA+=("$extra")
		if [[ $once == ok ]]; then
			SONCE_OK=$((SONCE_OK + 1))
			SONCE+=("$(bench_sub "$once_at" "$(bench_field "$v1" once_start)")")
		fi
	fi
	bench_log "kill $k ($kind): $P died; service address answers after $(bench_fmt "$dark" %.3f) s, $S's own address after $(bench_fmt "$own" %.3f) s (+$(bench_fmt "$extra" %.3f) s); single connect: $once (started $(bench_fmt "$(bench_sub "$(bench_field "$v1" once_start)" "$t0")" %.3f) s after the death$([[ $once == ok ]] && echo ", greeted $(bench_fmt "$(bench_sub "$once_at" "$(bench_field "$v1" once_start)")" %.3f) s later")); $refused attempts refused"
	[[ $kind == loud ]] || lab_revive "$P"
	mt_start "$P" >/dev/null
	tmp=$P P=$S S=$tmp
done
lab_wait_for 60 pair_ready "$P" "$S" || bench_log "after the last kill, $S did not rejoin"

touch "$LAB_DIR/stop"
sleep 3
lab_wait_for 120 lab_postfix_settled "$P" || bench_log "$P still has messages queued"
sleep 1
lab_account "$log" "$SINK"
bench_log "$TOTAL messages answered 250 through the service address: $LOST lost, $DUPS delivered twice ($(tail -1 "$LAB_DIR/sender.out" 2>/dev/null))"

pct() { bench_pct "$@"; }
D50=$(pct 0.5 "${DARK[@]}") D99=$(pct 0.99 "${DARK[@]}")
SD50=$(pct 0.5 "${SDARK[@]}") SD99=$(pct 0.99 "${SDARK[@]}")
E99=$(pct 0.99 "${EXTRA[@]}") SE99=$(pct 0.99 "${SEXTRA[@]}")
SO50=$(pct 0.5 "${SONCE[@]}")
RPK=$(bench_calc "round($REFUSED / $((2 * KILLS)), 1)")
bench_log "loud: dark p50 $D50 s, p99 $D99 s, extra p99 $E99 s; silent: dark p50 $SD50 s, p99 $SD99 s, extra p99 $SE99 s (target extra <= 0.2 s: $(bench_verdict "$E99" '<=' 0.2), $(bench_verdict "$SE99" '<=' 0.2))"
bench_log "single connect: $ONCE_OK/$KILLS loud, $SONCE_OK/$KILLS silent got a greeting (silent p50 $SO50 s; target all silent: $(bench_verdict "$SONCE_OK" '>=' "$KILLS")); $RPK attempts refused per kill"
echo "RESULT family=$FAMILY kills=$KILLS dark_p50_s=$D50 dark_p99_s=$D99 silent_dark_p50_s=$SD50 silent_dark_p99_s=$SD99 extra_p99_s=$E99 silent_extra_p99_s=$SE99 once_ok=$ONCE_OK/$KILLS silent_once_ok=$SONCE_OK/$KILLS silent_once_p50_s=$SO50 refused_per_kill=$RPK lost=$LOST duplicated=$DUPS"
