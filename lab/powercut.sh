# shellcheck shell=bash
#
# powercut.sh: power cuts of a mailtwin node, for tests/lab/t-21-powercut and
# bench/run powercut. Source it after tests/lab/lib.sh.
#
# Both nodes' directories ($LAB_DIR/main, $LAB_DIR/backup: Postfix queue,
# mirror, mailtwind's state, logs) sit on lab/powerfs, a disk that keeps only
# what fsync and directory fsync made durable. Mail is sent in sync mode
# through the gate to dead.lab.test (nothing listens until the test says
# so, so every message stays queued and none is delivered behind the test's
# back); lab/sender.py logs each 250 with its time and queue ID.
#
#   pc_setup NAME          the pair on powerfs, the gate on both, the sender
#   pc_standby_cut         random wait, then the standby's power is cut
#                          (kill -9 of everything on it + powerfs cut); every
#                          message answered 250 before must be in its mirror,
#                          committed, once; the standby comes back and catches
#                          up. Adds to PC_CUTS PC_OWED PC_LOST PC_DUPS.
#   pc_run MODE CUTS       all of it: setup, CUTS standby cuts, then the story
#                          MODE (standby-first | primary-first); the last line
#                          is "PC mode=.. cuts=.. acked=.. lost=.. duplicated=..
#                          stuck=.. unprotected=.." (stuck: owed, still queued,
#                          undelivered; unprotected: answered 250 without a
#                          replica, sync_timeout passed, at a standby cut: not
#                          owed, counted apart)
#   pc_promote_story ORDER the pair ends: ORDER=standby-first: standby's power
#                          cut, then the primary killed; primary-first: the
#                          primary killed, the standby's power cut during its
#                          promotion. The standby restarts on what survived, is
#                          promoted (again), delivers: every message answered
#                          250 before the standby's cut must arrive exactly
#                          once (or still be queued). Adds to the same counts.
#
# The mirror makes changes durable with fsyncs only: powerfs cannot see
# syncfs (MAILTWIN_TEST_MIRROR_SYNC=fsync-only; PC_MIRROR_SYNC=none is the
# negative control, where nothing is synced and mail must be lost).

PC_CUTS=0 PC_OWED=0 PC_LOST=0 PC_DUPS=0 PC_STUCK=0 PC_UNPROTECTED=0
PC_RATE=${PC_RATE:-20}
# Every PC_PURGE_EVERY cuts the primary's queue is emptied (postsuper -d ALL,
# replicated): the checks then cover the 250s since (PC_AFTER), and stay
# short however many cuts a run makes. PC_ACKED_DONE counts the windows closed.
PC_PURGE_EVERY=${PC_PURGE_EVERY:-15} PC_AFTER=0 PC_ACKED_DONE=0

pc_setup() {
	export MT_FAILOVER=manual MAILTWIN_TEST_MIRROR_SYNC=${PC_MIRROR_SYNC:-fsync-only}
	pair_setup "$1"
	mt_gate main || fail "postfix-config on main"
	mt_gate backup || fail "postfix-config on backup"
	lab_powerfs "$LAB_DIR/main"
	lab_powerfs "$LAB_DIR/backup"
	pair_start
	PC_LOG=$LAB_DIR/pc-accepted.log
	lab_bg client "$LAB_DIR/sender.out" python3 "$REPO/lab/sender.py" --queue-ids \
		--servers "$(lab_ip main)" --rcpt pc@dead.lab.test --rate "$PC_RATE" --log "$PC_LOG" \
		--stop-file "$LAB_DIR/stop" --max-seconds 7200 >/dev/null
	PC_SENDER=$LAB_BG_PID
	lab_wait_for 20 test -s "$PC_LOG" || fail "no mail accepted"
}

# pc_check ARGS...: lab/powercut_check.py --log $PC_LOG ARGS; adds its counts.
pc_check() {
	local out
	out=$(python3 "$REPO/lab/powercut_check.py" --log "$PC_LOG" --after "$PC_AFTER" "$@") ||
		fail "powercut_check: $out"
	echo "$out" >>"$LAB_DIR/pc-checks.log"
	PC_OWED=$(_pc_field "$out" owed)
	PC_LOST=$((PC_LOST + $(_pc_field "$out" lost)))
	PC_DUPS=$((PC_DUPS + $(_pc_field "$out" duplicated)))
	PC_UNPROTECTED=$((PC_UNPROTECTED + $(_pc_field "$out" unprotected)))
	PC_LAST=$out
}
# _pc_evidence WHAT: after a check that found a loss, keeps the evidence
# outside the lab (which is removed at the end): the check, both daemons'
# logs, the accepted log. In ${PC_EVIDENCE:-/tmp}/powercut-LAB_ID-N.
_pc_evidence() {
	[[ $(_pc_field "$PC_LAST" lost) != 0 && ${MAILTWIN_TEST_MIRROR_SYNC:-} != none ]] || return 0
	local d=${PC_EVIDENCE:-/tmp}/powercut-$LAB_ID-$PC_CUTS
	mkdir -p "$d"
	echo "$1: $PC_LAST" | tee "$d/check" >&2
	cp "$LAB_DIR"/*-mailtwind.history "$LAB_DIR/main/mailtwind.log" "$PC_LOG" "$d/" 2>/dev/null || true
	echo "   evidence kept in $d" >&2
}

# _pc_stuck_evidence: the promoted node still holds acknowledged mail with
# the destination up: keeps what says why (its queue with each message's
# queue and delay reason, its maillog, its daemon's log and status).
_pc_stuck_evidence() {
	local d=${PC_EVIDENCE:-/tmp}/powercut-$LAB_ID-stuck
	mkdir -p "$d"
	echo "stuck: $PC_LAST" >"$d/check"
	lab_pf backup postqueue -j >"$d/postqueue.json" 2>&1 || true
	find "$LAB_DIR/backup/spool"/{maildrop,incoming,active,deferred,hold} -type f \
		-printf '%P mode %m size %s mtime %TT\n' >"$d/queue-files" 2>&1 || true
	mt_json backup >"$d/status.json"
	lab_exec backup ss -tanp >"$d/sockets" 2>&1 || true
	cp "$LAB_DIR/backup/maillog" "$LAB_DIR/backup/mailtwind.log" "$LAB_DIR"/sink-dest-*.log "$d/" 2>/dev/null || true
	cp "$LAB_DIR"/*-mailtwind.history "$PC_LOG" "$d/" 2>/dev/null || true
	echo "   $PC_STUCK messages stuck on the promoted node: evidence kept in $d" >&2
}
_pc_field() { [[ " $1 " =~ [[:space:]]$2=([0-9]+) ]] && echo "${BASH_REMATCH[1]}" || echo 0; }

# pc_power_off HOST: everything on HOST dies at once, then its disk loses
# what was not durable. Sets PC_T_KILL (the instant before the kill).
pc_power_off() {
	local host=$1
	cat "$LAB_DIR/$host/mailtwind.log" >>"$LAB_DIR/$host-mailtwind.history" 2>/dev/null || true
	PC_T_KILL=$EPOCHREALTIME
	lab_crash "$host"
	lab_powercut "$LAB_DIR/$host" >>"$LAB_DIR/pc-cuts.log" || fail "powerfs cut on $host failed"
	PC_CUTS=$((PC_CUTS + 1))
}

_pc_gate() {  # KEY: a field of main's gate status; "?" if there is none
	local v
	v=$(mt_json main "gate.$1") || v=
	echo "${v:-?}"
}
_pc_epoch() { PC_EPOCH=$(mt_status backup epoch 2>/dev/null); [[ $PC_EPOCH =~ ^[0-9]+$ ]]; }
_pc_protected() { [[ $(_pc_gate unprotected) == 0 ]]; }

pc_standby_cut() {
	sleep "$(python3 -c 'import random; print(round(random.uniform(0.2, 1.2), 3))')"
	local epoch unprotected ids
	lab_wait_for 10 _pc_epoch || fail "the standby does not answer status"
	epoch=$PC_EPOCH
	# Messages the gate answered without a replica (the standby slower than
	# sync_timeout: a loaded machine; the gate logs it and status counts
	# them) were never promised: counted apart, by queue ID. One answered so
	# between this read and the kill counts as lost: never hidden.
	unprotected=$(_pc_gate unprotected)
	ids=$(_pc_gate unprotected_ids | tr -d "[]' " )
	[[ $ids == "?" ]] && ids=
	pc_power_off backup
	pc_check --before "$PC_T_KILL" --mirror "$LAB_DIR/backup/mirror" --unprotected "$ids"
	_pc_evidence "cut $PC_CUTS (unprotected at the kill: $unprotected)"
	[[ ${PC_VERBOSE:-} ]] && echo "   cut $PC_CUTS: $PC_LAST" | head -3
	mt_start backup >/dev/null || fail "backup did not restart after the power cut"
	# (a daemon just started may not answer status at once)
	lab_wait_for 10 _pc_epoch || fail "the restarted standby does not answer status"
	((PC_EPOCH >= epoch)) || fail "the standby's epoch went back from $epoch to $PC_EPOCH after a power cut"
	mt_wait_state main live 30 || fail "the link did not come back after the power cut"
	# Messages answered while the standby was down are unprotected: the next
	# cut may count them only once the standby has them again.
	lab_wait_for 30 _pc_protected || fail "messages stayed unprotected after the standby came back"
	((PC_CUTS % PC_PURGE_EVERY == 0)) && pc_purge
	return 0
}

# pc_purge: empties the primary's queue (the deletions replicate); later
# checks count only the 250s from now on.
pc_purge() {
	PC_ACKED_DONE=$((PC_ACKED_DONE + PC_OWED))
	PC_OWED=0
	lab_pf main postsuper -d ALL >/dev/null 2>&1 || fail "postsuper -d ALL on main"
	# A message committed before the deletion may get its 250 up to
	# sync_timeout (1 s) later, with nothing left to replicate: only 250s
	# from 2 s after the deletion count.
	PC_AFTER=$(python3 -c "print($EPOCHREALTIME + 2)")
	sleep 3.5  # so that the next cut has 250s to check
}

# pc_deliver_and_check: the promoted backup delivers to the dead
# destination, started now; every owed message must arrive once.
pc_deliver_and_check() {
	local i out
	_pc_destination_up
	lab_pf backup postqueue -f >/dev/null 2>&1 || true
	# Until every owed message arrived, or the queue is empty (what is
	# missing then is lost), or two minutes passed (what is queued is stuck).
	for ((i = 0; i < 120; i++)); do
		out=$(python3 "$REPO/lab/powercut_check.py" --log "$PC_LOG" --after "$PC_AFTER" \
			--before "$PC_T_KILL" --sink "$SINK_DEAD")
		[[ $out == *" lost=0 "* ]] && break
		((i >= 5)) && queue_settled backup && break
		((i % 10 == 9)) && { lab_pf backup postqueue -f >/dev/null 2>&1 || true; }  # past qmgr's backoff
		sleep 1
	done
	sleep 2  # duplicates, if any, arrive too
	pc_check --before "$PC_T_KILL" --sink "$SINK_DEAD" --queue "$LAB_DIR/backup/spool" \
		--mirror "$LAB_DIR/backup/mirror" --unprotected "${PC_STORY_UNPROTECTED:-}"
	_pc_evidence "the story"
	# Still queued after two minutes with the destination up: not lost, but
	# a promoted node that does not deliver is a failure too.
	PC_STUCK=$(_pc_field "$PC_LAST" queued)
	((PC_STUCK == 0)) || _pc_stuck_evidence
	if [[ -n ${PC_DEBUG_PAUSE:-} && $PC_LAST != *" queued=0"* ]]; then
		echo "lab $LAB_DIR kept for $PC_DEBUG_PAUSE s"; sleep "$PC_DEBUG_PAUSE"
	fi
}

# The destination of the owed mail comes up only once the promotion is done
# (and the power cut over): until then nothing is delivered, so the mirror
# must hold every message, and a message delivered twice is mailtwin's doing,
# not Postfix's (Postfix never fsyncs a directory: a power cut right after a
# delivery brings the queue file back, and Postfix delivers it again).
_pc_destination_up() { lab_sink_start dest 2526 "$SINK_DEAD" >/dev/null; }

pc_promote_story() {
	touch "$LAB_DIR/stop"
	case $1 in
	standby-first)
		PC_STORY_UNPROTECTED=$(_pc_gate unprotected_ids | tr -d "[]' ")
		[[ $PC_STORY_UNPROTECTED == "?" ]] && PC_STORY_UNPROTECTED=
		pc_power_off backup
		lab_crash main
		;;
	primary-first)
		lab_crash main
		# The cut lands in the promotion: once the node has saved its new
		# role (the first thing it does) and has begun to move the mirror
		# into the queue (or after 10 s).
		rm -f "$LAB_DIR/pc-ready"
		python3 - "$LAB_DIR/backup" "$LAB_DIR/pc-ready" <<-'EOT' &
			import os, sys, time
			state = os.path.join(sys.argv[1], "mailtwin/state/state.json")
			mirror = os.path.join(sys.argv[1], "mirror")
			def files():
			    n = 0
			    for q in ("incoming", "active", "deferred", "hold", "maildrop"):
			        try:
			            n += len(os.listdir(os.path.join(mirror, q)))
			        except OSError:
			            pass
			    return n
			def primary():
			    try:
			        return b'"primary"' in open(state, "rb").read()
			    except OSError:
			        return False
			first, end = files(), time.time() + 10
			open(sys.argv[2], "w").close()  # measured: the promotion may start
			while time.time() < end and not (primary() and files() < first):
			    time.sleep(0.001)
		EOT
		local poller=$! promote
		lab_wait_for 10 test -e "$LAB_DIR/pc-ready" || fail "the promotion watcher did not start"
		mt backup promote --force >/dev/null 2>&1 &
		promote=$!
		wait "$poller" || true
		pc_power_off backup
		wait "$promote" 2>/dev/null || true
		;;
	*) fail "pc_promote_story: unknown order $1" ;;
	esac
	mt_start backup >/dev/null || fail "backup did not restart on what survived"
	# What an administrator does after the restart: promote (again). A node
	# whose promotion the cut interrupted may already say primary on disk.
	echo "   after the restart: backup is $(mt_status backup role) at epoch $(mt_status backup epoch);" \
		"$(grep -o 'mirror: .* holds [0-9]* queue files' "$LAB_DIR/backup/mailtwind.log" | tail -1 | sed 's/.* holds/mirror holds/')"
	local out
	out=$(mt backup promote --force 2>&1) || fail "promotion after the power cut failed: $out"
	echo "   promote --force: $(tr '\n' ' ' <<<"$out")"
	lab_wait_for 30 lab_postfix_running backup || fail "backup's Postfix does not run after the promotion"
	lab_wait_for 30 lab_postfix_running backup || fail "backup's Postfix did not start after promotion"
	pc_deliver_and_check
}

pc_run() {
	local mode=$1 n=$2 i
	pc_setup "pc-$mode"
	for ((i = 0; i < n; i++)); do pc_standby_cut; done
	echo "after $n standby power cuts: $PC_LAST"
	pc_promote_story "$mode"
	echo "after the story ($mode): $PC_LAST"
	echo "PC mode=$mode cuts=$PC_CUTS acked=$((PC_ACKED_DONE + PC_OWED)) lost=$PC_LOST duplicated=$PC_DUPS stuck=$PC_STUCK unprotected=$PC_UNPROTECTED"
}
