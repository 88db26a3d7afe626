#!/bin/bash
#
# t-27-dedup-gap: the primary dies after its Postfix committed a message (and
# the standby holds it) but before its gate read the after-filter's `queued
# as ID`: the sender never got its 250 and sends the message again, to the
# other node. The gate named the message before passing its final "." on
# (XFORWARD IDENT: the queue file carries the token as log_ident) and sent
# its fingerprint to the standby under that name, so the new primary binds
# the fingerprint to the queue file it inherited and answers the resend 250
# without queueing it again (docs/gate.md, "Duplicates after a failover").
# Before tokens, no fingerprint was ever sent in this window (the gate sends
# one with the ID, which it never read) and the resend was delivered twice.
#
# The window is made wide on purpose: main's gate runs with
# MAILTWIN_TEST_GATE_REPLY_DELAY_MS (a test switch: the gate waits that long
# before it even reads the after-filter's reply to the message's end).
#   1. a client sends one message to main; while the gate sits on its reply,
#      backup has bound the message's fingerprint to its queue file
#      (dedup.tokens_bound); main's host is killed -9: the client gets no 250;
#   2. backup takes over; its dedup table holds the message;
#   3. the client sends the very same message to backup: 250, and backup's
#      gate logs it as a duplicate, not queued again;
#   4. the destination receives the message exactly once (by Message-ID).
# With MT_DURABILITY=strict (ctest lab-strict.t-27-dedup-gap) the message is
# on hold on both nodes while main's gate waits, and its client never got a
# 250: backup must NOT enter it in its dedup table (the resend would be
# answered 250 and dropped, and the held copy never delivered: a loss).
# Then in 2, backup says it left the held message out; in 3, the resend is
# queued (once main is back as standby: strict takes no mail without one);
# in 4, the destination has it once and backup's hold/ keeps the old copy
# for the administrator.
# With MT_DURABILITY=strict and T27_RELEASED=1 (ctest
# lab-strict-released.t-27-dedup-gap) main dies later in the same exchange:
# after the standby had the release from hold (strict's step 3,
# docs/gate.md), before the 250 (MAILTWIN_TEST_GATE_RELEASED_DELAY_MS). The
# message is then deliverable on both nodes (main may even have delivered
# it): backup enters it in its dedup table, and the resend is answered 250
# and not queued again: the destination has it once, and nothing is left
# on hold.
# With T27_ORPHAN=1 (ctest lab-orphan.t-27-dedup-gap; sync) main's queue file
# never reaches backup (MAILTWIN_TEST_REPL_NO_LIVE_CHANGES: no queue change
# after the start is sent), while the gate's token frame does: at the
# take-over the token is an orphan (docs/gate.md). The resend is queued
# (an orphan is never matched on intake) and noted as the orphan's resend;
# when main comes back and hands its own copy over, backup drops that copy
# ("its sender sent it again after the failover"): the destination has the
# message once. main's Postfix does not deliver (defer_transports), so
# that it still has its copy: one that had gone out before main died is
# delivered again by the resend, as it must be (nobody can know).
. "$(dirname "$0")/../lib.sh"
# CASE: gap (sync), held (strict), released (strict, T27_RELEASED=1), orphan
# (sync, T27_ORPHAN=1).
CASE=gap
[[ ${MT_DURABILITY:-sync} == strict ]] && CASE=held
if [[ ${T27_RELEASED:-0} == 1 ]]; then
	[[ $CASE == held ]] || { echo "T27_RELEASED=1 needs MT_DURABILITY=strict" >&2; exit 2; }
	CASE=released
fi
if [[ ${T27_ORPHAN:-0} == 1 ]]; then
	[[ $CASE == gap ]] || { echo "T27_ORPHAN=1 is for durability sync" >&2; exit 2; }
	CASE=orphan
fi
STRICT=0
[[ $CASE == held || $CASE == released ]] && STRICT=1
DELAY_SWITCH=MAILTWIN_TEST_GATE_REPLY_DELAY_MS
[[ $CASE != released ]] || DELAY_SWITCH=MAILTWIN_TEST_GATE_RELEASED_DELAY_MS

pair_setup t-27
mt_gate main
mt_gate backup
# orphan: main must still hold its copy when it comes back (had it
# delivered it before dying, the resend would rightly be a second copy).
[[ $CASE != orphan ]] || lab_postconf main -e "defer_transports = smtp"
lab_postfix_start main
# main's only
export "$DELAY_SWITCH=5000"
[[ $CASE != orphan ]] || export MAILTWIN_TEST_REPL_NO_LIVE_CHANGES=1
mt_start main >/dev/null || fail "mailtwind on main did not start"
unset "$DELAY_SWITCH" MAILTWIN_TEST_REPL_NO_LIVE_CHANGES
mt_start backup >/dev/null || fail "mailtwind on backup did not start"
mt_wait_state main live 20 || fail "replication link did not come up"
grep -q "$DELAY_SWITCH=5000" "$LAB_DIR/main/mailtwind.log" ||
	fail "main's gate did not take the test switch"

# The one message (lab/send_once.py: always the same bytes).
MESSAGE=(t27-gap@client.lab.test t-27 "sent until it is answered 250")

# 1.
lab_bg client "$LAB_DIR/send1.log" python3 "$REPO/lab/send_once.py" "$(lab_ip main)" "$LAB_DIR/first" "${MESSAGE[@]}" >/dev/null
if [[ $CASE == orphan ]]; then
	# The token frame arrived; main's after-filter committed the file, which
	# never leaves main.
	waiting() { (($(mt_json backup dedup.tokens_waiting) >= 1)); }
	committed() { grep -q "orig_queue_id=mt-" "$LAB_DIR/main/maillog"; }
	lab_wait_for 4 waiting || fail "backup got no gate token within 4 s: $(mt_json backup dedup)"
	lab_wait_for 4 committed || fail "main's after-filter did not queue the message"
	(($(mt_json backup dedup.tokens_bound) == 0)) || fail "main's queue file reached backup: $(mt_json backup dedup)"
else
	bound() { (($(mt_json backup dedup.tokens_bound) >= 1)); }
	lab_wait_for 4 bound || fail "backup bound no gate token to a queue file within 4 s: $(mt_json backup dedup)"
fi
if [[ $CASE == released ]]; then
	# main released it (its qmgr took it) and backup has that move: no
	# hold/ file left in backup's mirror.
	released() {
		grep -q "qmgr.*from=<a@client.lab.test>" "$LAB_DIR/main/maillog" &&
			[[ -z $(find "$LAB_DIR/backup/mirror" -path '*/hold/*' -type f) ]]
	}
	lab_wait_for 4 released || fail "main's gate did not release the message, or backup did not get the release"
fi
[[ ! -s $LAB_DIR/first ]] || fail "the client had its answer before the kill: $(cat "$LAB_DIR/first")"
id=$(grep -o "orig_queue_id=mt-[0-9a-f]*" "$LAB_DIR/main/maillog" | head -1 || true)
[[ -n $id ]] || fail "main's after-filter logged no gate token (XFORWARD IDENT)"
lab_crash main
lab_wait_for 10 test -s "$LAB_DIR/first" || fail "the client is still waiting 10 s after main died"
grep -q "^no 250" "$LAB_DIR/first" || fail "the client got a 250 from the dead main: $(cat "$LAB_DIR/first")"
case $CASE in
orphan) what="backup got its token, not its file" ;;
released) what="released it from hold, and backup bound its fingerprint to it" ;;
*) what="backup bound its fingerprint to it" ;;
esac
echo "1. main queued the message ($id); $what; main died before the 250: $(cat "$LAB_DIR/first")"

# 2.
lab_wait_for 20 mt_role_is backup primary 2 || fail "backup did not take over: $(mt backup status)"
blog=$LAB_DIR/backup/mailtwind.log
case $CASE in
held)
	grep -q "dedup: 1 messages the old primary accepted are on hold here" "$blog" ||
		fail "backup did not leave the held message out of its dedup table: $(grep dedup "$blog")"
	echo "2. backup took over at epoch 2; the message is on hold there and was left out of its dedup table"
	;;
orphan)
	(($(mt_json backup dedup.orphans) == 1)) || fail "backup has no orphan: $(mt_json backup dedup)"
	(($(mt_json backup dedup.entries) == 0)) || fail "backup entered a message it never had: $(mt_json backup dedup)"
	echo "2. backup took over at epoch 2; $(grep -o "dedup: 1 messages the old primary's gate saw end never reached this node" "$blog")"
	;;
*)
	! grep -q "accepted are on hold here" "$blog" ||
		fail "backup found the message on hold: $(grep dedup "$blog")"
	grep -q "dedup: [1-9][0-9]* messages the old primary accepted" "$blog" ||
		fail "backup's dedup table got nothing at the take-over: $(grep dedup "$blog")"
	echo "2. backup took over at epoch 2; $(grep -o "dedup: [0-9]* messages the old primary accepted" "$blog" | head -1)"
	;;
esac

# 3. (strict refuses every message while there is no standby: main comes
# back first, and follows.)
if ((STRICT)); then
	mt_start main >/dev/null || fail "mailtwind on main did not start again"
	mt_wait_state backup live 30 || fail "main did not rejoin as backup's standby: $(mt backup status)"
fi
lab_wait_port client "$(lab_ip backup)" 25 || fail "backup does not listen on port 25"
lab_exec client python3 "$REPO/lab/send_once.py" "$(lab_ip backup)" "$LAB_DIR/second" "${MESSAGE[@]}"
[[ $(cat "$LAB_DIR/second") == 250 ]] || fail "the resend to backup was not answered 250: $(cat "$LAB_DIR/second")"
dup=$(grep -h "gate: duplicate of" "$blog" | head -1 || true)
case $CASE in
held | orphan)
	[[ -z $dup ]] || fail "backup's gate dropped the resend of a message it does not have deliverable:${dup#*gate:}"
	echo "3. the resend was answered 250 and queued"
	;;
*)
	[[ -n $dup ]] || fail "backup's gate did not recognise the resend"
	echo "3. the resend was answered 250:${dup#*gate:}"
	;;
esac

# 3b. The orphan's own copy: main comes back and offers it.
if [[ $CASE == orphan ]]; then
	mt_start main >/dev/null || fail "mailtwind on main did not start again"
	mt_wait_state backup live 30 || fail "main did not rejoin as backup's standby: $(mt backup status)"
	lab_wait_for 20 mt_handover_done main || fail "main's set-aside queue was not settled"
	drop=$(grep -h "handover: .* already queued in this primary (its sender sent it again" "$blog" | head -1 || true)
	[[ -n $drop ]] || fail "backup did not drop main's copy of the resent message: $(grep -h 'handover:' "$blog" | tail -3)"
	echo "3b. main rejoined and offered its copy; backup dropped it:${drop#*handover:}"
fi

# 4.
expect_one_copy backup "${MESSAGE[0]}"
case $CASE in
held)
	held=$(lab_postfix_queued backup hold)
	((held == 1)) || fail "backup's hold/ has $held messages, expected the old copy"
	echo "4. the destination has the message once; backup keeps the old copy on hold"
	;;
released)
	held=$(lab_postfix_queued backup hold)
	((held == 0)) || fail "backup's hold/ has $held messages, expected none"
	echo "4. the destination has the message once; nothing is on hold"
	;;
*) echo "4. the destination has the message once" ;;
esac
pass
