#!/bin/bash
#
# t-03-promote: the mirror is a usable queue. Main holds mail in every state;
# it crashes (every Postfix process and mailtwind killed -9); the standby is
# promoted with `mailtwin promote --force`. Then every recipient of every
# message that was queued on main is delivered exactly once, counting what
# main had delivered before the crash: nothing lost, nothing twice.
. "$(dirname "$0")/../lib.sh"
# Promotion is by hand here (failover = manual): this scenario tests what it
# is given, not the automatic failover of t-06.
export MT_FAILOVER=manual

pair_setup t-03
pair_start
queue=$LAB_DIR/main/spool

# Before the crash main delivers some mail itself: it must not come again.
lab_source client "$(lab_ip main)" -s 2 -m 20 -l 2048 -f s@client.lab.test \
	-t early@sink.lab.test || fail "smtp-source"
# 200 messages for a destination that is down: they wait in deferred/.
lab_source client "$(lab_ip main)" -s 4 -m 200 -l 3000 -f s@client.lab.test \
	-t later@dead.lab.test || fail "smtp-source"
partly=$(send_mail s@client.lab.test p1@sink.lab.test p2@dead.lab.test)
send_mail s@client.lab.test d@dead.lab.test >/dev/null
send_mail s@dead.lab.test b1@bounce.lab.test b2@dead.lab.test >/dev/null
held=$(send_mail s@client.lab.test h@dead.lab.test)
deferred_count() { (($(find "$queue/deferred" -type f 2>/dev/null | wc -l) >= 205)); }
lab_wait_for 30 deferred_count || fail "mail did not reach deferred/"
lab_pf main postsuper -h "$held" 2>/dev/null || fail "postsuper -h"

# Mail in maildrop/ and incoming/: pickup and qmgr stopped.
stop_pickup_and_qmgr main
printf 'Subject: maildrop\n\nlocal\n' |
	lab_pf main sendmail -f local@main.lab.test m@sink.lab.test || fail "sendmail"
send_mail s@client.lab.test i1@sink.lab.test >/dev/null
send_mail s@client.lab.test i2@sink.lab.test i3@dead.lab.test >/dev/null

mt_wait_synced main backup 30 || fail "mirror did not converge before the crash"
echo "main holds $(find "$queue"/{incoming,active,deferred,hold,maildrop} -type f | wc -l) messages; mirror identical"

# The crash, then the promotion.
mt_kill main
lab_postfix_kill main
lab_sink_start dest 2526 "$SINK_DEAD" >/dev/null
mt backup promote --force || fail "promote failed"
[[ $(mt_status backup role) == primary ]] || fail "backup is not primary after promote"
lab_postfix_running backup || fail "Postfix does not run on backup"

# Wait until backup has delivered everything it can (the held message stays).
lab_wait_for 90 lab_postfix_settled backup ||
	fail "backup did not deliver everything: $(lab_postfix_queued backup "incoming active deferred maildrop") left"
[[ -n $(find "$LAB_DIR/backup/spool/hold" -name "$held") ]] || fail "the held message is not held on backup"

# Count deliveries: one line "message-id recipient" per delivered recipient.
{ lab_sink_rcpts "$SINK_OK"; lab_sink_rcpts "$SINK_DEAD"; } | sort >"$LAB_DIR/delivered"
dups=$(uniq -d "$LAB_DIR/delivered")
[[ -z $dups ]] || fail "delivered twice: $dups"
want() {
	local n
	n=$(awk -v r="$1" '$2 == r' "$LAB_DIR/delivered" | wc -l)
	((n == $2)) || fail "$1: delivered $n times, want $2"
}
want early@sink.lab.test 20
want later@dead.lab.test 200
want p1@sink.lab.test 1
want p2@dead.lab.test 1
want d@dead.lab.test 1
want b2@dead.lab.test 1
want s@dead.lab.test 1   # the NDR for b1
want m@sink.lab.test 1
want i1@sink.lab.test 1
want i2@sink.lab.test 1
want i3@dead.lab.test 1
want h@dead.lab.test 0
echo "delivered exactly once: $(wc -l <"$LAB_DIR/delivered") recipients"
pass
