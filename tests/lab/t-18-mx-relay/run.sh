#!/bin/bash
#
# t-18-mx-relay: the standby's port 25 is always open (docs/failover.md,
# "What a sending MTA sees during a failover"). Port 25 of both nodes is
# mailtwind's relay; Postfix listens behind it on loopback with the PROXY
# protocol.
#   0. check-config verifies Postfix's side of the relay;
#   1. while main serves, a client that connects to backup's address (MX
#      20) is passed on to main: its message is queued on main, through
#      main's gate (the after-filter queued it), and main's log names the
#      client's own address, not backup's;
#   2. a real sending Postfix with Postfix's DEFAULT retry settings
#      (minimal_backoff_time and queue_run_delay 300 s) finds the pair by
#      MX and delivers a steady stream through main;
#   3. main dies mid-stream (every process of its host, kill -9). The
#      sender's attempts on backup are held, not refused, until backup
#      serves; no attempt is refused by both MX hosts, the sender defers no
#      message ("delivery temporarily suspended" would leave the rest for 5
#      minutes), and its queue empties by itself, well before its first
#      retry could run;
#   4. every message the sender accepted is at the sink (duplicates are
#      counted and reported).
. "$(dirname "$0")/../lib.sh"

export MT_RELAY=on  # [relay] is off unless configured
pair_setup t-18
mx_setup  # Postfix's default retry settings
mt_gate main
mt_gate backup
pair_start

# 0. check-config verifies the Postfix side: it fails while Postfix listens
# on port 25 itself (the relay could not bind it), and passes once
# postfix-config has moved it behind the relay.
conf=$LAB_DIR/backup/mailtwin.toml
mt backup check-config "$conf" >/dev/null || fail "check-config on backup: $(mt backup check-config "$conf")"
lab_postconf backup -M "smtp/inet=smtp inet n - n - - smtpd"
out=$(mt backup check-config "$conf") && fail "check-config passed with Postfix on port 25: $out"
grep -q "listens on port 25 itself" <<<"$out" || fail "check-config did not say why: $out"
mt_relay backup || fail "postfix-config --relay-only on backup"
mt backup check-config "$conf" >/dev/null || fail "check-config after postfix-config: $(mt backup check-config "$conf")"
echo "0. check-config: refuses Postfix on port 25 beside the relay, passes after postfix-config"

relay_stat() { mt_json "$1" "relay.$2"; }  # HOST KEY: one field of the status's "relay" section

# 1. A client at the standby's address.
client_ip=$(lab_ip client)
out=$(lab_exec client swaks --server "$(lab_ip backup):25" --helo client.lab.test \
	--from s@client.lab.test --to standby@sink.lab.test --header "Subject: via backup" 2>&1) ||
	fail "swaks to backup's address: $(echo "$out" | tail -n 3)"
id=$(echo "$out" | sed -n 's/.*queued as \([0-9A-Za-z]*\).*/\1/p' | tail -n 1)
[[ -n $id ]] || fail "no queue ID in the reply from backup's address: $(echo "$out" | tail -n 3)"
# The after-filter logs the gate as its client and the real one from
# XFORWARD (orig_client), which the public smtpd had from the PROXY header.
grep -q "postfix/afterfilter/smtpd\[[0-9]*\]: $id: client=.*, orig_client=[^ ]*\[${client_ip//./\\.}\]\$" "$LAB_DIR/main/maillog" ||
	fail "$id was not queued on main through the gate with the client's address $client_ip: $(grep "$id" "$LAB_DIR/main/maillog" | head -3)"
! grep -q " $id: " "$LAB_DIR/backup/maillog" 2>/dev/null || fail "backup queued $id itself"
(($(relay_stat backup to_peer) >= 1)) || fail "backup's relay passed nothing to main"
echo "1. a client at backup's address: $id queued on main through its gate, logged as client [$client_ip]"

# 2. The stream by MX.
mx_stream "a@sink.lab.test,b@sink.lab.test"
echo "2. the sender (default retry settings) delivers through main: $MX_RELAYED"

# 3. main dies mid-stream; the stream goes on for 3 s, then stops.
t0=$EPOCHREALTIME
lab_crash main
took_over() { mt_role_is backup primary 2; }
lab_wait_for 20 took_over || fail "backup did not take over: $(mt backup status 2>&1 | head -5)"
sleep 3
touch "$LAB_DIR/stop"
# A deferred message would wait 300 s for its retry: 120 s tells them apart.
lab_wait_for 120 lab_postfix_empty sender ||
	fail "the sender still holds $(lab_postfix_queued sender) messages 120 s after the kill: $(lab_pf sender postqueue -p | tail -n 4)"
drain=$(python3 -c "print(f'{$EPOCHREALTIME - $t0:.1f}')")
echo "3. main killed; backup primary at epoch 2; the sender's queue is empty $drain s after the kill;" \
	"backup's relay held $(relay_stat backup held_total) connections, the longest $(relay_stat backup held_max_s) s"

# 4. The mail, by Message-ID at the sink.
settle backup
lab_mx_account "$log" sender "$SINK_OK" >/dev/null
echo "4. $MX_ACCOUNT drain_s=$drain"
((MX_REFUSED_BOTH == 0)) ||
	fail "$MX_REFUSED_BOTH delivery attempts were refused by both MX hosts: $(grep -m3 'Connection refused' "$LAB_DIR/sender/maillog")"
((MX_DEFERRED == 0)) ||
	fail "the sender deferred $MX_DEFERRED messages: $(grep -m3 ' status=deferred ' "$LAB_DIR/sender/maillog")"
[[ $MX_ACCOUNT =~ via_backup=([0-9]+) ]] && ((BASH_REMATCH[1] > 0)) ||
	fail "the sender delivered nothing through backup (MX 20) after main died"
((LOST == 0)) || fail "$LOST accepted messages were lost: $(head -3 "$LAB_DIR/lost" | tr '\n' ' ')"
((DUPS == 0)) || echo "   ($DUPS delivered twice: reported, not judged here)"
pass
