#!/bin/bash
#
# t-14-mx-failover: inbound mail by MX, as the Internet sends it. A real
# sending Postfix on its own host (sender) looks up the MX records of
# sink.lab.test and slow.lab.test (main 10, backup 20) at the lab's DNS
# server (dnsmasq on host dns) and delivers a steady stream to the pair,
# which relays it to the sinks on dest. slow.lab.test's server takes 1 s
# before it answers DATA, so main always holds mail in flight. main dies
# mid-stream (every process of its host, kill -9); backup takes over by
# itself on its mirror of main's queue, and the sender finds it by its own
# MX retry.
#   1. before the kill the sender delivers through main (MX 10) only;
#   2. backup takes over (primary at epoch 2) and the sender delivers
#      through it (MX 20);
#   3. the sender's queue empties: the time from the kill is what senders
#      feel. The sender retries after 2 s here (minimal_backoff_time,
#      queue_run_delay) instead of Postfix's 300 s, so that the test is short;
#   4. every message the sender accepted is at a sink, by Message-ID: none
#      is lost, neither those main had in its queue when it died nor those
#      the sender deferred. Duplicates, the sender's deferrals, attempts that both MX
#      hosts refused and "may be sent more than once" are counted and
#      reported, not judged (duplicates on failover are another issue's).
. "$(dirname "$0")/../lib.sh"

export SLOW_SECONDS=1
pair_setup t-14
mx_setup "${MX_FAST_RETRY[@]}"
mt_gate main
mt_gate backup
pair_start

# 1. The stream: lab/sender.py hands 20 messages a second to the sender's
# Postfix, which delivers them by MX.
mx_stream "a@sink.lab.test,b@slow.lab.test"
echo "1. the sender found main by MX and delivered through it: $MX_RELAYED"

# 2. main dies mid-stream; the stream goes on for 3 s, then stops.
t0=$EPOCHREALTIME
lab_crash main
sleep 3
touch "$LAB_DIR/stop"
took_over() { mt_role_is backup primary 2; }
lab_wait_for 20 took_over || fail "backup did not take over: $(mt backup status 2>&1 | head -5)"
live=$(grep -o "[0-9]* queue files made live" "$LAB_DIR/backup/mailtwind.log" | cut -d' ' -f1)
echo "2. main killed; backup is primary at epoch 2 and made ${live:-0} of main's queue files live"

# 3. The sender's queue empties by its own retries.
lab_wait_for 60 lab_postfix_empty sender ||
	fail "the sender still holds $(lab_postfix_queued sender) messages 60 s after the kill: $(lab_pf sender postqueue -p | tail -n 4)"
drain=$(python3 -c "print(f'{$EPOCHREALTIME - $t0:.1f}')")
echo "3. the sender's queue is empty $drain s after the kill (stream stopped at 3 s)"

# 4. The mail, by Message-ID at the sink.
settle backup
lab_mx_account "$log" sender "$SINK_OK" "$SINK_SLOW" >/dev/null
echo "4. $MX_ACCOUNT drain_s=$drain"
[[ $MX_ACCOUNT =~ via_backup=([0-9]+) ]] && ((BASH_REMATCH[1] > 0)) ||
	fail "the sender delivered nothing through backup (MX 20) after main died"
((LOST == 0)) || fail "$LOST accepted messages were lost: $(head -3 "$LAB_DIR/lost" | tr '\n' ' ')"
((DUPS == 0)) || echo "   ($DUPS delivered twice: reported, not judged here)"
pass
