#!/bin/bash
#
# t-19-hand-started-postfix: while a node must not serve, nobody but
# mailtwind can start its Postfix (issue 16, item 4). mailtwind holds the
# lock Postfix's master takes (pid/master.pid), so `postfix start` by hand,
# by an init script or by a careless administrator fails with "already
# running", and `postfix status` says why.
#   1. On the standby: postfix start fails; postfix status names mailtwind;
#      postfix stop and reload harm nothing; the primary's Postfix is free.
#   2. An old primary comes back alone (its peer is down, its epoch
#      unconfirmed) with 40 messages in its queue whose destination is up
#      again: postfix start by hand fails, and in 3 s nothing is delivered
#      from the stale queue. `mailtwin promote --force` (the administrator's
#      decision) then delivers each of them once.
. "$(dirname "$0")/../lib.sh"
export MT_FAILOVER=manual

pair_setup t-19
pair_start
mt_wait_state backup live 20 || fail "backup is not following"

# 1. The standby.
out=$(lab_pf backup postfix start 2>&1) && fail "postfix start by hand on the standby succeeded: $out"
grep -q "already running" <<<"$out" || fail "postfix start failed for another reason: $out"
lab_postfix_running backup && fail "a Postfix master runs on the standby"
[[ $(mt_ha backup postfix_kept_stopped) == True ]] || fail "backup's mailtwind does not keep Postfix stopped: $(mt_ha backup postfix_kept_stopped)"
[[ $(mt_ha main postfix_kept_stopped) == False ]] || fail "main's mailtwind holds its serving Postfix's lock"
st=$(lab_pf backup postfix status 2>&1) || true
grep -q "mailtwind keeps this Postfix stopped" <<<"$st" || fail "postfix status does not say why: $st"
lab_pf backup postfix stop >/dev/null 2>&1 || true
lab_pf backup postfix reload >/dev/null 2>&1 || true
kill -0 "$(_mt_pid backup)" || fail "postfix stop by hand on the standby hit mailtwind"
kill -0 "$(_mt_pid main)" || fail "postfix stop by hand on the standby hit main's mailtwind"
mt_wait_state backup live 5 || fail "the standby's link is down after postfix stop/reload by hand"
echo "1. standby: postfix start by hand refused ('$(head -1 <<<"$out")'); postfix status: '$st'"

# 2. An old primary with a stale queue, alone.
lab_source client "$(lab_ip main)" -s 4 -m 40 -l 2048 -f s@client.lab.test \
	-t stale@dead.lab.test || fail "smtp-source"
deferred() { (($(lab_postfix_queued main deferred) >= 40)); }
lab_wait_for 30 deferred || fail "the 40 messages did not reach deferred/ on main"
mt_wait_synced main backup 30 || fail "mirror did not converge"
mt_stop backup
# main reboots: mailtwind and Postfix go, the destination comes back.
mt_kill main
lab_postfix_stop main
lab_sink_start dest 2526 "$SINK_DEAD" >/dev/null
mt_start main >/dev/null || fail "mailtwind on main did not start"
[[ $(mt_status main role) == primary && $(mt_ha main epoch_confirmed) == False ]] ||
	fail "main is not an unconfirmed primary: $(mt_status main role), confirmed $(mt_ha main epoch_confirmed)"
out=$(lab_pf main postfix start 2>&1) && fail "postfix start by hand on the unconfirmed old primary succeeded: $out"
[[ $(mt_ha main postfix_kept_stopped) == True ]] || fail "main's mailtwind does not keep Postfix stopped while unconfirmed"
sleep 3
n=$(lab_sink_messages "$SINK_DEAD")
((n == 0)) || fail "$n messages of the stale queue delivered before mailtwind decided"
lab_postfix_running main && fail "a Postfix master runs on the unconfirmed old primary"
echo "2. unconfirmed old primary: postfix start by hand refused; 0 of 40 stale messages delivered in 3 s"

mt main promote --force >/dev/null || fail "promote --force on main"
# A primary that promotes itself starts Postfix at its next decision.
lab_wait_for 10 lab_postfix_running main || fail "Postfix does not run on main after promote --force: $(grep -E 'decide|start' "$LAB_DIR/main/mailtwind.log" | tail -3)"
[[ $(mt_ha main postfix_kept_stopped) == False ]] || fail "main still holds Postfix's lock after promote"
lab_pf main postqueue -f >/dev/null 2>&1 || true
lab_sink_wait "$SINK_DEAD" 40 60 || fail "main did not deliver its queue after promote: $(lab_sink_messages "$SINK_DEAD") of 40"
sleep 1
dups=$(lab_sink_rcpts "$SINK_DEAD" | sort | uniq -d)
[[ -z $dups ]] || fail "delivered twice: $dups"
echo "   promote --force: Postfix started by mailtwind, 40 of 40 delivered once"
pass
