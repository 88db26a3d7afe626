#!/bin/bash
#
# t-01-queue-states: the standby's mirror becomes byte-identical to the
# primary's queue (same files, modes, mtimes, logs) for mail in every state:
# delivered and gone, partly delivered (a 'D' recipient), deferred with a
# defer log, bounced (its NDR queued as a new message), active (a slow
# destination), held, in maildrop (pickup stopped) and in incoming (qmgr
# stopped).
. "$(dirname "$0")/../lib.sh"

pair_setup t-01
pair_start

# Delivered at once: these come and go, and must leave nothing behind.
lab_source client "$(lab_ip main)" -s 2 -m 20 -l 2048 -f s@client.lab.test \
	-t gone@sink.lab.test || fail "smtp-source"

partly=$(send_mail s@client.lab.test p1@sink.lab.test p2@dead.lab.test)
deferred=$(send_mail s@client.lab.test d@dead.lab.test)
bounced=$(send_mail s@dead.lab.test b1@bounce.lab.test b2@dead.lab.test)
slow=$(send_mail s@client.lab.test s@slow.lab.test)
held=$(send_mail s@client.lab.test h@dead.lab.test)

in_deferred() { queue_has main deferred "$1"; }
ndr_queued() { (($(lab_postfix_queued main deferred) >= 5)); }
for id in "$partly" "$deferred" "$bounced" "$held"; do
	lab_wait_for 20 in_deferred "$id" || fail "$id did not reach deferred/"
done
lab_wait_for 20 ndr_queued || fail "the NDR for b1 was not queued"
lab_pf main postsuper -h "$held" 2>/dev/null || fail "postsuper -h"
in_active() { queue_has main active "$1"; }
lab_wait_for 10 in_active "$slow" || fail "$slow is not in active/"

# Checkpoint 1: deferred, held, bounced, partly delivered and active mail.
queue="$LAB_DIR/main/spool"
count() { lab_postfix_queued main "$1"; }
(($(count active) == 1)) || fail "expected one message in active/, have $(count active)"
(($(count hold) == 1)) || fail "expected a message in hold/"
# 3 deferred messages + the NDR for b1, itself deferred (its sender is at dead).
(($(count deferred) == 4)) || fail "expected 4 messages in deferred/, have $(count deferred)"
(($(count defer) >= 4)) || fail "expected defer logs"
# Looked for a few times: postcat -q can miss a file that a retry is moving
# between deferred/ and active/ at that instant (seen under CI load).
b1_done() { grep -q "done_recipient: b1@bounce.lab.test" <<<"$(lab_pf main postcat -q "$bounced" 2>/dev/null)"; }
lab_wait_for 10 b1_done || fail "$bounced: b1 not marked done after its bounce"
# partly delivered: p1's recipient record is marked done ('D') in place
# (looked for a few times, as b1 above: a retry may be moving the file).
p1_done() { grep -q "done_recipient: p1@sink.lab.test" <<<"$(lab_pf main postcat -q "$partly" 2>/dev/null)"; }
lab_wait_for 10 p1_done || fail "$partly has no done recipient"
mt_wait_synced main backup 30 || fail "mirror did not converge (checkpoint 1)"
echo "checkpoint 1: mirror identical, $(mt_queue_digest "$queue" | wc -l) files and logs"

# maildrop and incoming: stop pickup and qmgr; then a local submission stays
# in maildrop/ and two SMTP messages stay in incoming/ where cleanup put them.
stop_pickup_and_qmgr main
printf 'Subject: maildrop\n\nwaits for pickup\n' |
	lab_pf main sendmail -f local@main.lab.test m@sink.lab.test || fail "sendmail"
send_mail s@client.lab.test i1@sink.lab.test >/dev/null
send_mail s@client.lab.test i2@sink.lab.test i3@dead.lab.test >/dev/null

(($(count incoming) >= 2)) || fail "expected 2 messages in incoming/, have $(count incoming)"
(($(count maildrop) == 1)) || fail "expected a message in maildrop/"

mt_wait_synced main backup 30 || fail "mirror did not converge (checkpoint 2)"
echo "checkpoint 2: mirror identical, $(mt_queue_digest "$queue" | wc -l) files and logs"
[[ $(mt_status main state) == live ]] || fail "link not live at the end"
pass
