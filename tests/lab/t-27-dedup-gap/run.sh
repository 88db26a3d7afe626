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
. "$(dirname "$0")/../lib.sh"
STRICT=0 RELEASED=0
[[ ${MT_DURABILITY:-sync} == strict ]] && STRICT=1
if [[ ${T27_RELEASED:-0} == 1 ]]; then
	((STRICT)) || { echo "T27_RELEASED=1 needs MT_DURABILITY=strict" >&2; exit 2; }
	RELEASED=1
fi
DELAY_SWITCH=MAILTWIN_TEST_GATE_REPLY_DELAY_MS
((RELEASED == 0)) || DELAY_SWITCH=MAILTWIN_TEST_GATE_RELEASED_DELAY_MS

pair_setup t-27
mt_gate main
mt_gate backup
lab_postfix_start main
export "$DELAY_SWITCH=5000"  # main's only
mt_start main >/dev/null || fail "mailtwind on main did not start"
unset "$DELAY_SWITCH"
HELD=0  # the message is on hold on backup when main dies
((STRICT == 0 || RELEASED)) || HELD=1
mt_start backup >/dev/null || fail "mailtwind on backup did not start"
mt_wait_state main live 20 || fail "replication link did not come up"
grep -q "$DELAY_SWITCH=5000" "$LAB_DIR/main/mailtwind.log" ||
	fail "main's gate did not take the test switch"

# send.py SERVER OUT: the one message (always the same bytes), its outcome in OUT.
cat >"$LAB_DIR/send.py" <<'PY'
import smtplib, sys
msg = (b"From: <a@client.lab.test>\r\nTo: <a@sink.lab.test>\r\n"
       b"Message-ID: <t27-gap@client.lab.test>\r\nSubject: t-27\r\n\r\n"
       b"sent until it is answered 250\r\n")
try:
    s = smtplib.SMTP(sys.argv[1], 25, local_hostname="client.lab.test", timeout=30)
    s.sendmail("a@client.lab.test", ["a@sink.lab.test"], msg)
    out = "250"
    s.quit()
except Exception as e:
    out = "no 250: %s: %s" % (type(e).__name__, e)
open(sys.argv[2], "w").write(out + "\n")
PY

# 1.
bound0=$(mt_json backup dedup.tokens_bound)
lab_bg client "$LAB_DIR/send1.log" python3 "$LAB_DIR/send.py" "$(lab_ip main)" "$LAB_DIR/first" >/dev/null
bound() { (($(mt_json backup dedup.tokens_bound) > bound0)); }
lab_wait_for 4 bound || fail "backup bound no gate token to a queue file within 4 s: $(mt_json backup dedup)"
if ((RELEASED)); then
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
echo "1. main queued the message ($id)$( ((RELEASED)) && echo ", released it from hold")" \
	"and backup bound its fingerprint to it; main died before the 250: $(cat "$LAB_DIR/first")"

# 2.
lab_wait_for 20 mt_role_is backup primary 2 || fail "backup did not take over: $(mt backup status)"
if ((HELD)); then
	grep -q "dedup: 1 messages the old primary accepted are on hold here" "$LAB_DIR/backup/mailtwind.log" ||
		fail "backup did not leave the held message out of its dedup table: $(grep dedup "$LAB_DIR/backup/mailtwind.log")"
	echo "2. backup took over at epoch 2; the message is on hold there and was left out of its dedup table"
else
	! grep -q "accepted are on hold here" "$LAB_DIR/backup/mailtwind.log" ||
		fail "backup found the message on hold: $(grep dedup "$LAB_DIR/backup/mailtwind.log")"
	grep -q "dedup: [1-9][0-9]* messages the old primary accepted" "$LAB_DIR/backup/mailtwind.log" ||
		fail "backup's dedup table got nothing at the take-over: $(grep dedup "$LAB_DIR/backup/mailtwind.log")"
	echo "2. backup took over at epoch 2; $(grep -o "dedup: [0-9]* messages the old primary accepted" "$LAB_DIR/backup/mailtwind.log" | head -1)"
fi

# 3. (strict refuses every message while there is no standby: main comes
# back first, and follows.)
if ((STRICT)); then
	mt_start main >/dev/null || fail "mailtwind on main did not start again"
	mt_wait_state backup live 30 || fail "main did not rejoin as backup's standby: $(mt backup status)"
fi
lab_wait_port client "$(lab_ip backup)" 25 || fail "backup does not listen on port 25"
lab_exec client python3 "$LAB_DIR/send.py" "$(lab_ip backup)" "$LAB_DIR/second"
[[ $(cat "$LAB_DIR/second") == 250 ]] || fail "the resend to backup was not answered 250: $(cat "$LAB_DIR/second")"
dup=$(grep -h "gate: duplicate of" "$LAB_DIR/backup/mailtwind.log" | head -1 || true)
if ((HELD)); then
	[[ -z $dup ]] || fail "backup's gate dropped the resend of a message it only has on hold:${dup#*gate:}"
	echo "3. the resend was answered 250 and queued"
else
	[[ -n $dup ]] || fail "backup's gate did not recognise the resend"
	echo "3. the resend was answered 250:${dup#*gate:}"
fi

# 4.
copies() { lab_sink_rcpts "$SINK_OK" | awk '$1 == "t27-gap@client.lab.test"' | wc -l; }
lab_wait_for 30 eval '(($(copies) >= 1))' || fail "the message never reached the destination"
settle backup
sleep 2
n=$(copies)
((n == 1)) || fail "the destination has $n copies of the message"
if ((HELD)); then
	held=$(lab_postfix_queued backup hold)
	((held == 1)) || fail "backup's hold/ has $held messages, expected the old copy"
	echo "4. the destination has the message once; backup keeps the old copy on hold"
elif ((STRICT)); then
	held=$(lab_postfix_queued backup hold)
	((held == 0)) || fail "backup's hold/ has $held messages, expected none"
	echo "4. the destination has the message once; nothing is on hold"
else
	echo "4. the destination has the message once"
fi
pass
