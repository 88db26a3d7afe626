# shellcheck shell=bash
#
# lib.sh: the setting every mailtwin lab scenario starts from.
#
#   client (.20) --SMTP--> main (.1: Postfix + mailtwind, primary)
#                            |  replication, mutual TLS
#                          backup (.2: Postfix + mailtwind, standby)
#   with mx_setup, mail from the Internet:
#   sender (.30: Postfix) --SMTP, by MX--> main (MX 10), else backup (MX 20)
#   dns (.53): dnsmasq, the MX records of the five domains below
#   dest (.9): smtp-sink on four ports, one per kind of destination:
#     sink.lab.test   :25    accepts              -> $SINK_OK
#     dead.lab.test   :2526  nothing listens      -> mail is deferred
#                            (tests start it later: $SINK_DEAD)
#     bounce.lab.test :2527  rejects RCPT with 5xx -> bounces
#     slow.lab.test   :2528  waits SLOW_SECONDS before answering DATA
#                            -> the message sits in active/
#     late.lab.test   :2529  (lab/late_sink.py) takes each message, then waits 1 s before its
#                            250 -> $SINK_LATE: every delivery has a window
#                            where a killed client makes a duplicate
#
# Functions: pair_setup NAME, pair_start (Postfix on main, both daemons,
# waits until the link is live), mx_setup [KEY=VALUE...] (hosts dns and
# sender: a Postfix that finds main and backup by MX), start_sender RATE
# RCPTS [SERVERS [HOST]] (mail under load, logged in $log), settle HOST (stop
# the sender, wait until HOST has delivered everything), settle_and_account,
# send_mail FROM TO... (swaks from client, prints the queue ID), fail MSG,
# pass; witness_pair_setup NAME (the pair with a [witness]: a 3-member etcd
# cluster on hosts etcd1..etcd3, .41-.43, both gates on; WITNESS_TTL).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=../../lab/lab.sh
. "$REPO/lab/lab.sh"
# shellcheck source=../../lab/mailtwin.sh
. "$REPO/lab/mailtwin.sh"

fail() {
	echo "FAIL: $*"
	keep_logs
	for h in main backup; do
		[[ -f ${LAB_DIR:-/nonexistent}/$h/mailtwind.log ]] || continue
		echo "--- $h mailtwind.log (last 15 lines)"
		tail -n 15 "$LAB_DIR/$h/mailtwind.log"
	done
	if [[ -n ${MT_PAUSE_ON_FAIL:-} ]]; then  # debugging: keep the lab up for a look
		echo "lab $LAB_ID kept for $MT_PAUSE_ON_FAIL s: $LAB_DIR"
		sleep "$MT_PAUSE_ON_FAIL"
	fi
	exit 1
}

# MT_KEEP_LOGS=DIR (debugging): the daemons' logs and maillogs are copied
# to DIR/<test>/ whatever the outcome.
keep_logs() {
	[[ -n ${MT_KEEP_LOGS:-} && -n ${LAB_DIR:-} ]] || return 0
	local dest=$MT_KEEP_LOGS/${LAB_ID:-lab} h
	mkdir -p "$dest"
	for h in main backup sender; do
		cp "$LAB_DIR/$h/mailtwind.log" "$dest/$h-mailtwind.log" 2>/dev/null || true
		cp "$LAB_DIR/$h/maillog" "$dest/$h-maillog" 2>/dev/null || true
	done
	cp "$LAB_DIR"/*.log "$dest/" 2>/dev/null || true
	echo "logs kept in $dest"
}

pass() {
	keep_logs
	echo "PASS: ${0##*/tests/lab/}"
	exit 0
}

SLOW_SECONDS=${SLOW_SECONDS:-60}

pair_setup() {
	lab_init "$1"
	lab_host main 1
	lab_host backup 2
	lab_host dest 9
	lab_host client 20
	local d
	d=$(lab_ip dest)
	local tm="inline:{ sink.lab.test=smtp:[$d]:25, dead.lab.test=smtp:[$d]:2526,"
	tm+=" bounce.lab.test=smtp:[$d]:2527, slow.lab.test=smtp:[$d]:2528,"
	tm+=" late.lab.test=smtp:[$d]:2529 }"
	# Both nodes take both names as local: queued mail moves between them,
	# Postfix's own notices included (postmaster@backup.lab.test, made on
	# backup, may be delivered by main) - as in a real pair.
	for h in main backup; do
		lab_postfix_create "$h" "transport_maps = $tm" \
			"mydestination = main.lab.test, backup.lab.test, localhost"
	done
	SINK_OK=$LAB_DIR/sink-ok
	SINK_DEAD=$LAB_DIR/sink-dead
	SINK_SLOW=$LAB_DIR/sink-slow
	SINK_LATE=$LAB_DIR/sink-late
	lab_sink_start dest 25 "$SINK_OK" >/dev/null
	lab_sink_start dest 2527 "$LAB_DIR/sink-bounce" -f RCPT >/dev/null
	lab_sink_start dest 2528 "$SINK_SLOW" -w "$SLOW_SECONDS" >/dev/null
	lab_late_sink_start dest 2529 "$SINK_LATE" 1 >/dev/null
	mt_pki main backup
	mt_config main primary backup
	mt_config backup standby main
}

# witness_pair_setup NAME: pair_setup NAME, plus hosts etcd1..etcd3 (.41,
# .42, .43), one etcd member each (lab_etcd_cluster), and both nodes'
# [witness] pointing at the three (TTL: WITNESS_TTL seconds, default 4);
# both gates on. Start with pair_start, then witness_wait_held main.
witness_pair_setup() {
	WITNESS_TTL=${WITNESS_TTL:-4}
	pair_setup "$1"
	lab_host etcd1 41
	lab_host etcd2 42
	lab_host etcd3 43
	lab_etcd_cluster etcd1 etcd2 etcd3
	MT_WITNESS=$(lab_etcd_endpoints etcd1 etcd2 etcd3) MT_WITNESS_TTL=${WITNESS_TTL}s mt_config main primary backup
	MT_WITNESS=$(lab_etcd_endpoints etcd1 etcd2 etcd3) MT_WITNESS_TTL=${WITNESS_TTL}s mt_config backup standby main
	mt_gate main
	mt_gate backup
}
witness_held() { [[ $(mt_witness "$1" lease_held) == True ]]; }
# witness_wait_held HOST [T]: HOST holds the leader key (within T s, default 15).
witness_wait_held() {
	lab_wait_for "${2:-15}" witness_held "$1" || fail "$1 does not hold the witness's leader key: $(mt "$1" status)"
}
# mt_event_raised HOST KIND: HOST's event log has an event KIND.
mt_event_raised() { grep -q "\"kind\":\"$2\"" "$LAB_DIR/$1/mailtwin/state/events.jsonl" 2>/dev/null; }

# mx_setup [KEY=VALUE...]: mail from the Internet, by MX. Adds host dns
# (.53: dnsmasq; the MX records of each domain above, sink.lab.test to
# late.lab.test, are main at 10 and backup at 20, or $MX_RECORDS: see
# lab_dns_start) and host sender (.30: a Postfix that delivers by
# MX, with the settings KEY=VALUE; Postfix's default retry times unless they
# say otherwise, e.g. "${MX_FAST_RETRY[@]}"), and starts both. Feed it
# with start_sender RATE RCPTS 127.0.0.1 sender.
MX_FAST_RETRY=(minimal_backoff_time=2s maximal_backoff_time=4s queue_run_delay=2s)
mx_setup() {
	lab_host dns 53
	lab_host sender 30
	# shellcheck disable=SC2086 # MX_RECORDS: words (lab_dns_start's MXHOST:PREF)
	lab_dns_start dns sink.lab.test,dead.lab.test,bounce.lab.test,slow.lab.test,late.lab.test \
		${MX_RECORDS:-main:10 backup:20} >/dev/null
	lab_mx_sender_create sender dns "$@"
	lab_postfix_start sender
}

# mx_stream RCPTS: the sender's Postfix gets 20 messages a second (each to
# the next of the comma-separated RCPTS) and delivers them by MX; after 4 s
# they must all have gone through main (MX 10). Leaves "via_main=N" in
# MX_RELAYED.
mx_stream() {
	start_sender 20 "$1" 127.0.0.1 sender
	sleep 4
	MX_RELAYED=$(lab_mx_relayed sender)
	[[ $MX_RELAYED =~ ^via_main=[0-9]+$ ]] ||
		fail "the sender did not deliver through main (MX 10) only: '$MX_RELAYED'; $(tail -n 3 "$LAB_DIR/sender/maillog")"
}

pair_start() {
	lab_postfix_start main
	# main first: its port 25 is its mailtwind's relay, and a standby that
	# probed it before it listens would count failures (and tell of a lost
	# primary) before any primary ever connected. main's link dials backup
	# until it answers.
	mt_start main >/dev/null || fail "mailtwind on main did not start"
	mt_start backup >/dev/null || fail "mailtwind on backup did not start"
	mt_wait_state main live 20 || fail "replication link did not come up"
}

# start_sender RATE RCPTS [SERVERS [HOST]]: HOST (default: client) sends
# RATE messages a second (lab/sender.py) to SERVERS, tried in order (default:
# main, then backup, like two MX records), each to the next of the
# comma-separated RCPTS. Every 250 is a line of $log ($LAB_DIR/accepted.log:
# ... Message-ID RCPT SERVER TIME). Waits for the first one. It stops at
# $LAB_DIR/stop (what settle_and_account touches) or after 300 s. A sending
# Postfix that delivers by MX (lab_mx_sender_create sender dns) is fed with
# SERVERS 127.0.0.1 and HOST sender.
start_sender() {
	local rate=$1 rcpts=$2 servers=${3:-$(lab_ip main),$(lab_ip backup)} host=${4:-client}
	log=$LAB_DIR/accepted.log
	lab_bg "$host" "$LAB_DIR/sender.out" python3 "$REPO/lab/sender.py" --times \
		--servers "$servers" --rcpt "$rcpts" --rate "$rate" --log "$log" \
		--stop-file "$LAB_DIR/stop" --max-seconds 300 >/dev/null
	lab_wait_for 20 test -s "$log" || fail "no mail accepted (servers $servers)"
}

# queue_settled HOST: lab_postfix_settled HOST (lab/lab.sh): no committed
# message left in incoming, active, deferred or maildrop.
queue_settled() { lab_postfix_settled "$1"; }

# queue_files HOST: every file in HOST's incoming, active, deferred and
# maildrop, with its mode and age (for failure messages).
queue_files() {
	find "$LAB_DIR/$1/spool"/{incoming,active,deferred,maildrop} -type f \
		-printf '%P mode %m size %s age %Ts\n' 2>/dev/null |
		awk -v now="$(date +%s)" '{ $NF = int(now - $NF) "s"; print }'
}

# settle_and_account HOST LOG SINK_DIR...: settle HOST, then lab_account.
settle_and_account() {
	settle "$1"
	shift
	lab_account "$@"
}

# settle HOST: stops the sender (touches $LAB_DIR/stop) and waits until HOST
# has delivered everything.
settle() {
	local host=$1
	touch "$LAB_DIR/stop"
	sleep 2
	# Mail deferred by the test's own violence (a delivery cut by a kill)
	# would wait for Postfix's next queue run (5 minutes): retry it now.
	local deferred
	deferred=$(lab_postfix_queued "$host" deferred)
	if ((deferred > 0)); then
		echo "   ($host had $deferred deferred messages at the end: flushed)"
		lab_exec "$host" postqueue -c "$(lab_postfix_conf "$host")" -f || true
	fi
	lab_wait_for 60 queue_settled "$host" ||
		fail "$host did not deliver everything: $(queue_files "$host" | tail -5; lab_exec "$host" postqueue -c "$(lab_postfix_conf "$host")" -p | tail -5)"
	local temps
	temps=$(queue_files "$host")
	[[ -z $temps ]] || echo "   ($host still holds uncommitted temporary files: $temps)"
	sleep 1
}

# maillog_queue_id HOST MESSAGE_ID: the queue ID HOST's Postfix first gave
# the message (its cleanup's message-id= line), or nothing.
maillog_queue_id() {
	grep -F "message-id=<$2>" "$LAB_DIR/$1/maillog" | grep -o ': [0-9A-Za-z]*: message-id' | head -1 | cut -d' ' -f2 | tr -d : || true
}

# sink_copies MESSAGE_ID: how many copies the good destination received.
sink_copies() { lab_sink_rcpts "$SINK_OK" | awk -v m="$1" '$1 == m' | wc -l; }

# expect_one_copy HOST MESSAGE_ID: the destination receives the message
# once HOST has delivered everything: fails on none or on more than one.
expect_one_copy() {
	local host=$1 mid=$2 n
	lab_wait_for 30 eval '(($(sink_copies "$mid") >= 1))' || fail "the message never reached the destination"
	settle "$host"
	sleep 2
	n=$(sink_copies "$mid")
	((n == 1)) || fail "the destination has $n copies of the message"
}

# crash_after_250s N LOAD_LOG: under smtp-source load, lab/gate_trial.py
# sends to main until the N-th 250 (To: crash@sink.lab.test), then every
# process of main is killed -9 at once and backup is promoted by hand.
# Sets $accepted (messages answered 250); their IDs are in
# $LAB_DIR/accepted.log.
crash_after_250s() {
	local n=$1 crash=$LAB_DIR/crash.sh main_ip
	main_ip=$(lab_ip main)
	echo "for i in 1 2 3; do ip netns pids $LAB_ID-main | xargs -r kill -9; done" >"$crash"
	lab_bg client "$2" smtp-source -M client.lab.test -s 4 -m 3000 -l 3000 \
		-f s@client.lab.test -t load@sink.lab.test "$main_ip:25" >/dev/null
	sleep 0.5
	lab_exec client python3 "$REPO/lab/gate_trial.py" --server "$main_ip" --rcpt crash@sink.lab.test \
		--freeze "$(_mt_pid main)" --crash-after "$n" --crash-cmd "bash $crash" \
		--log "$LAB_DIR/accepted.log" --pause-ms 10 || fail "crash trial client"
	mt_kill main
	lab_postfix_kill main
	mt backup promote --force >/dev/null || fail "promote failed"
	accepted=$(wc -l <"$LAB_DIR/accepted.log")
}

# missing_accepted: the Message-IDs crash_after_250s got a 250 for that
# have not reached $SINK_OK (compared by ID: a count could hide a loss
# behind a duplicate).
missing_accepted() {
	lab_sink_rcpts "$SINK_OK" | awk '$2 == "crash@sink.lab.test" { print $1 }' | sort -u >"$LAB_DIR/got"
	awk '{ print $1 }' "$LAB_DIR/accepted.log" | sort -u | comm -23 - "$LAB_DIR/got"
}
accepted_all_delivered() { [[ -z $(missing_accepted) ]]; }

# send_mail FROM TO...: one message from client to main; prints its queue ID.
send_mail() {
	local from=$1 out id to
	shift
	to=$(IFS=,; echo "$*")  # swaks takes one --to with a comma-separated list
	out=$(lab_exec client swaks --server "$(lab_ip main):25" --helo client.lab.test \
		--from "$from" --to "$to" --header "Subject: lab $to" 2>&1) ||
		fail "swaks to $to: $(echo "$out" | tail -n 3)"
	id=$(echo "$out" | sed -n 's/.*queued as \([0-9A-Za-z]*\).*/\1/p' | tail -n 1)
	[[ -n $id ]] || fail "no queue ID in swaks output for $to"
	echo "$id"
}

# stop_pickup_and_qmgr HOST: disable both services and wait until their
# processes are gone: from then on, local submissions stay in maildrop/ and
# SMTP mail stays in incoming/.
stop_pickup_and_qmgr() {
	local host=$1
	lab_postconf "$host" -e "master_service_disable = pickup.unix qmgr.unix"
	lab_pf "$host" postfix reload >/dev/null
	_service_gone() {
		local p
		for p in $(pgrep -x "$1"); do
			[[ $(readlink "/proc/$p/cwd") == "$LAB_DIR/$host/spool" ]] && return 1
		done
		return 0
	}
	lab_wait_for 10 _service_gone pickup || fail "pickup still runs on $host"
	lab_wait_for 10 _service_gone qmgr || fail "qmgr still runs on $host"
}

# queue_has HOST QUEUE ID: the queue file is in QUEUE (hash dirs included).
queue_has() {
	[[ -n $(find "$LAB_DIR/$1/spool/$2" -name "$3" -type f 2>/dev/null) ]]
}

# queue_quiet HOST: nothing in flight in HOST's queue (incoming, active,
# maildrop empty): what remains (deferred, hold) no longer changes by itself.
# (Not queue_settled, above: that one also wants deferred/ empty.)
queue_quiet() { (($(lab_postfix_queued "$1" "incoming active maildrop") == 0)); }

# traffic_start N: smtp-source in the background, N messages to each of a
# delivered and a deferred destination. traffic_wait: wait for it to finish.
traffic_start() {
	local n=$1 ip
	ip=$(lab_ip main)
	TRAFFIC_PIDS=()
	lab_bg client "$LAB_DIR/traffic-ok.log" smtp-source -M client.lab.test -s 2 -m "$n" -l 3000 \
		-f s@client.lab.test -t ok@sink.lab.test "$ip:25" >/dev/null
	TRAFFIC_PIDS+=("$LAB_BG_PID")
	lab_bg client "$LAB_DIR/traffic-dead.log" smtp-source -M client.lab.test -s 2 -m "$n" -l 3000 \
		-f s@client.lab.test -t later@dead.lab.test "$ip:25" >/dev/null
	TRAFFIC_PIDS+=("$LAB_BG_PID")
}
_traffic_done() {
	local p
	for p in "${TRAFFIC_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && return 1; done
	return 0
}
traffic_wait() { lab_wait_for "${1:-120}" _traffic_done; }

# dup_sources SENDER SINK_DIR...: after lab_mx_account, why each message
# delivered twice was: one line per duplicate, "MSGID lost250 ..." when the
# sender logged "message may be sent more than once" for it, or a 4xx "in
# reply to end of DATA command" (a node dying mid-reply: its smtpd lost the
# gate and said 451 for a message already queued): it lost the 250 of a
# copy that was queued, the case mailtwin's dedup answers; else
# "MSGID other ..." (both copies carry the same queue ID of the pair, so the
# sender's resend, if any, was not queued again: one queued copy went out
# twice), split by the pair's maillogs: DUP_DONE_LAG when each copy was
# logged status=sent (the dying primary finished the delivery and its done
# mark never reached the standby), DUP_INFLIGHT when fewer were (the
# destination took it while the dying node waited for its 250). Each line
# also names the node that relayed each copy (the sink's X-Client-Addr).
# Sets DUP_LOST250, DUP_OTHER (= DUP_DONE_LAG + DUP_INFLIGHT); the lines are
# in $LAB_DIR/dup_sources.
# DUP_LOST250_GAP counts the lost-250 duplicates none of whose copies' queue
# IDs on the pair (the "with ESMTP id" of a main or backup Received:
# header) is in a dedup table: the node died after the message was queued
# and replicated, and its fingerprint never reached the standby (before the
# gate tokens: its gate had not read the queue ID yet; docs/gate.md).
# Any other lost-250 duplicate had its fingerprint there: dedup failed.
dup_sources() {
	local sender=$1 id qid why via ids known
	shift
	DUP_LOST250=0 DUP_OTHER=0 DUP_LOST250_GAP=0 DUP_INFLIGHT=0 DUP_DONE_LAG=0
	: >"$LAB_DIR/dup_sources"
	while read -r id; do
		[[ -n $id ]] || continue
		qid=$(maillog_queue_id "$sender" "$id")
		via=$(grep -rliF "Message-Id: <$id>" "$@" 2>/dev/null | xargs -r grep -h '^X-Client-Addr:' |
			awk -v m="$(lab_ip main)" -v b="$(lab_ip backup)" '{ print ($2 == m ? "main" : $2 == b ? "backup" : $2) }' | paste -sd+ || true)
		# The pair's queue IDs of the copies at the sink (a long queue ID
		# stays the same on the standby's copy): one ID for both copies
		# means the same queued message went out twice, whatever the
		# sender did; two mean the sender's resend was queued again.
		ids=$(grep -rliF "Message-Id: <$id>" "$@" 2>/dev/null | xargs -r grep -hoE 'by (main|backup)\.lab\.test \(Postfix\) with E?SMTPS?A? id [0-9A-Za-z]+' |
			awk '{ print $NF }' | sort -u | paste -sd' ' || true)
		if [[ -n $qid && ($ids == *" "* || -z $ids) ]] && grep -Eq "$qid: .*(message may be sent more than once|said: 4[0-9][0-9] .*in reply to end of DATA command)" "$LAB_DIR/$sender/maillog"; then
			why="lost250 (the sender lost the 250 of a queued copy: $(grep -E "$qid: .*(message may be sent more than once|said: 4[0-9][0-9] .*in reply to end of DATA command)" "$LAB_DIR/$sender/maillog" | head -1 | grep -o 'lost connection with [^ ]*\|conversation with [^ ]*\|host [^ ]* said: 4[0-9][0-9]' | head -1 || true))"
			DUP_LOST250=$((DUP_LOST250 + 1))
			known=""
			for qid in $ids; do
				if cat "$LAB_DIR"/{main,backup}/mailtwin/state/dedup.table 2>/dev/null | awk -v q="$qid" '$2 == q { f = 1 } END { exit !f }'; then
					known="$known $qid"
				fi
			done
			if [[ -z $ids ]]; then
				why+=" [no queue ID of the pair found in its copies: counted as a failure]"
			elif [[ -z $known ]]; then
				DUP_LOST250_GAP=$((DUP_LOST250_GAP + 1))
				why+=" [gap: no fingerprint of its copies ($ids) reached a dedup table]"
			else
				why+=" [dedup failed: fingerprint of$known was in a dedup table]"
			fi
		else
			# One queued copy went out twice. The pair's logs tell how: a
			# "status=sent" for each copy means the dying node had the
			# destination's 250 and marked it done, but the mark never
			# reached the standby (done-mark lag); fewer mean a delivery was
			# in flight when the node died: the destination had taken the
			# message, its 250 never reached the node (RFC 1047 on the
			# outbound side: no relay can avoid that one; a log line the
			# kill cut off looks the same).
			local sent=0 q n
			for q in $ids; do
				n=$(cat "$LAB_DIR"/{main,backup}/maillog 2>/dev/null | grep -c "$q: to=<.*status=sent" || true)
				sent=$((sent + n))
			done
			if ((sent >= 2)); then
				why="other, done-mark lag (one queued copy ($ids) delivered twice, each logged status=sent: the dying primary's done mark never reached the standby)"
				DUP_DONE_LAG=$((DUP_DONE_LAG + 1))
			else
				why="other, in flight (one queued copy ($ids) delivered twice, status=sent logged $sent time(s): the destination took it while the dying primary waited for its 250)"
				DUP_INFLIGHT=$((DUP_INFLIGHT + 1))
			fi
			DUP_OTHER=$((DUP_OTHER + 1))
		fi
		echo "$id $why; copies relayed by $via" >>"$LAB_DIR/dup_sources"
	done < <(comm -12 "$LAB_DIR/accepted" <(uniq -d "$LAB_DIR/delivered"))
}
