#!/bin/bash
#
# t-02-converge: whatever happens to the link or to either daemon while mail
# flows, the mirror converges to the primary's queue once the flow stops.
#   1. the standby's daemon is killed (-9) mid-stream and restarted;
#   2. the standby's network link is cut (ip link down) past the peer
#      timeout, then restored;
#   3. the primary's daemon is restarted mid-stream;
#   4. inotify's event queue overflows (max_queued_events made tiny for the
#      primary's watcher): the watcher rescans and the mirror still converges.
. "$(dirname "$0")/../lib.sh"
# Promotion is by hand here (failover = manual): this scenario tests what it
# is given, not the automatic failover of t-06.
export MT_FAILOVER=manual

pair_setup t-02
pair_start
queue=$LAB_DIR/main/spool

converged() {
	lab_wait_for 120 queue_quiet main || fail "main's queue did not settle"
	mt_wait_synced main backup 60 || fail "mirror did not converge after: $1"
	echo "converged after $1: $(mt_queue_digest "$queue" | wc -l) files and logs"
}

# 1. Standby killed mid-stream.
traffic_start 400
sleep 1
mt_kill backup
sleep 1
mt_start backup >/dev/null || fail "standby did not restart"
traffic_wait || fail "traffic did not finish"
converged "standby killed and restarted"

# 2. Link cut for longer than peer_timeout (2 s), then restored.
traffic_start 300
sleep 0.5
lab_exec backup ip link set eth0 down
sleep 3
[[ $(mt_status main state) != live ]] || fail "primary did not notice the cut link"
lab_exec backup ip link set eth0 up
traffic_wait || fail "traffic did not finish"
mt_wait_state main live 20 || fail "link did not come back"
converged "link cut and restored"

# 3. Primary daemon restarted mid-stream.
traffic_start 300
sleep 1
mt_stop main
sleep 0.5
mt_start main >/dev/null || fail "primary daemon did not restart"
traffic_wait || fail "traffic did not finish"
mt_wait_state main live 20 || fail "link did not come back"
converged "primary daemon restarted"

# 4. Inotify overflow: the limit is read when the watcher's inotify instance
# is created, so restart the primary's daemon under a tiny limit, then restore it.
old=$(cat /proc/sys/fs/inotify/max_queued_events)
restore_limit() { echo "$old" >/proc/sys/fs/inotify/max_queued_events; }
trap 'restore_limit; _lab_on_exit' EXIT
mt_stop main
# Two queued events: one rename between queue directories (MOVED_FROM and
# MOVED_TO at once) fills it, so the next event overflows unless the watcher
# reads between them. A watcher quick enough to dodge one round of traffic
# gets another (at most 5); overflow must happen in the end.
echo 2 >/proc/sys/fs/inotify/max_queued_events
mt_start main >/dev/null || fail "primary daemon did not restart"
# The limit may be restored only once the watcher's instance exists: the
# link is live only after the watcher started. (Restored right after
# mt_start, it was back to normal before the daemon had created its
# instance in CI, and nothing ever overflowed.)
mt_wait_state main live 20 || fail "link did not come back"
restore_limit
watcher_overflows() { mt_json main replication.watcher.overflows; }
overflows=0
for round in 1 2 3 4 5; do
	traffic_start 200
	traffic_wait || fail "traffic did not finish"
	overflows=$(watcher_overflows)
	((overflows > 0)) && break
	echo "round $round: no inotify overflow yet"
done
((overflows > 0)) || fail "the inotify queue never overflowed in 5 rounds; the test proves nothing"
converged "$overflows inotify overflows"

pass
