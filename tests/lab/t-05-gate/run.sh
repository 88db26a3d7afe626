#!/bin/bash
#
# t-05-gate: the client's 250 waits until the standby holds the message.
#
# Main's Postfix routes its smtp service through mailtwind's gate
# (`mailtwin postfix-config --apply`), durability sync. Checked here:
#  1. the gate relays every kind of session faithfully: pipelining, BDAT
#     (CHUNKING), 8BITMIME, a 10 MiB message, 100 recipients; each message
#     reaches the destination intact, and the real client's address reaches
#     the after-filter's log (XFORWARD);
#  2. freeze trials under load: the instant a 250 arrives the primary's
#     mailtwind is frozen (nothing more can replicate) and the standby's mirror
#     must already hold that queue ID: 0 missing of 100 in sync mode; in async
#     mode the same harness must find missing ones (proof that it can fail);
#  3. standby down: sync keeps accepting after sync_timeout, counts the
#     messages as unprotected; once the standby is back they are protected
#     again (the count drops to 0);
#  4. a real crash: the main is killed -9 (every process) right after a 250,
#     the standby promoted; every message the client had a 250 for arrives.
. "$(dirname "$0")/../lib.sh"
# Promotion is by hand here (failover = manual): this scenario tests what it
# is given, not the automatic failover of t-06.
export MT_FAILOVER=manual

pair_setup t-05
for h in main backup; do
	lab_postconf "$h" -e "message_size_limit = 52428800"
	mt_gate "$h" || fail "postfix-config --apply on $h"
done
mt main check-config "$LAB_DIR/main/mailtwin.toml" >"$LAB_DIR/check.out" ||
	fail "check-config: $(cat "$LAB_DIR/check.out")"
grep -q warning "$LAB_DIR/check.out" && fail "check-config warns: $(cat "$LAB_DIR/check.out")"
pair_start
main_ip=$(lab_ip main)
gate() { mt_json main "gate.$1"; }

# --- 1. Faithful relay -------------------------------------------------------
out=$(lab_exec client swaks --server "$main_ip:25" --pipeline --helo client.lab.test \
	--from s@client.lab.test --to p1@sink.lab.test,p2@sink.lab.test \
	--header "Message-Id: <pipe.t05@client.lab.test>" 2>&1) || fail "swaks --pipeline: $out"
grep -q "queued as" <<<"$out" || fail "no 250 for the pipelined session: $out"

lab_exec client python3 - "$main_ip" <<'EOF' || fail "BDAT session failed"
import socket, sys
s = socket.create_connection((sys.argv[1], 25), timeout=30)
f = s.makefile("rb")
def reply():
    lines = []
    while True:
        l = f.readline().decode()
        lines.append(l)
        if l[3:4] != "-":
            return lines
assert reply()[0].startswith("220")
s.sendall(b"EHLO client.lab.test\r\n")
ehlo = reply()
assert any("CHUNKING" in l for l in ehlo), ehlo
assert any("8BITMIME" in l for l in ehlo), ehlo
msg = ("Message-ID: <bdat.t05@client.lab.test>\r\nSubject: bdat \u00e9\r\n"
       "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
       "caf\u00e9 line\r\n.\r\nnot the end\r\n").encode()
a, b = msg[:40], msg[40:]
# Pipelined: envelope and both chunks in one write.
s.sendall(b"MAIL FROM:<s@client.lab.test> BODY=8BITMIME\r\nRCPT TO:<bdat@sink.lab.test>\r\n" +
          b"BDAT %d\r\n" % len(a) + a + b"BDAT %d LAST\r\n" % len(b) + b)
r = [reply() for _ in range(4)]
codes = [x[-1][:3] for x in r]
assert codes == ["250"] * 4, r
assert "queued as" in r[3][-1], r
s.sendall(b"QUIT\r\n")
print("BDAT:", r[3][-1].strip())
EOF

big=$LAB_DIR/big.txt
python3 -c '
import sys
line = "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvw\n"
sys.stdout.write(line * (10 * 1048576 // len(line)) + "END-OF-BIG-MESSAGE\n")' >"$big"
out=$(lab_exec client swaks --server "$main_ip:25" --from s@client.lab.test --to big@sink.lab.test \
	--header "Message-Id: <big.t05@client.lab.test>" --body @"$big" 2>&1) ||
	fail "swaks 10 MiB: $(tail -n 3 <<<"$out")"
grep -q "queued as" <<<"$out" || fail "no 250 for the 10 MiB message"

rcpts=$(for i in $(seq 1 100); do printf 'r%d@sink.lab.test,' "$i"; done)
out=$(lab_exec client swaks --server "$main_ip:25" --from s@client.lab.test --to "${rcpts%,}" \
	--header "Message-Id: <many.t05@client.lab.test>" 2>&1) || fail "swaks 100 rcpts"
grep -q "queued as" <<<"$out" || fail "no 250 for the 100-recipient message"

# Postfix delivers 100 recipients as two transactions of 50.
_relayed() { (($(lab_sink_rcpts "$SINK_OK" | grep -c '\.t05@client') >= 104)); }
lab_wait_for 60 _relayed || fail "the relayed messages did not all arrive"
rc=$(lab_sink_rcpts "$SINK_OK")
for m in pipe bdat big many; do grep -q "^$m.t05@client.lab.test " <<<"$rc" || fail "$m did not arrive"; done
(($(grep -c '^many.t05' <<<"$rc") == 100)) || fail "not all 100 recipients got the message"
(($(grep -c '^pipe.t05' <<<"$rc") == 2)) || fail "the pipelined message lost a recipient"
bigfile=$(grep -l 'big.t05@client' "$SINK_OK"/*)
grep -q END-OF-BIG-MESSAGE <<<"$(tail -c 200 "$bigfile")" || fail "the 10 MiB message arrived cut"
(($(stat -c %s "$bigfile") > 10 * 1048576)) || fail "the 10 MiB message arrived short"
grep -q "$(printf 'caf\xc3\xa9 line')" "$(grep -l 'bdat.t05@client' "$SINK_OK"/*)" ||
	fail "the BDAT message lost its 8-bit body"
grep -q "orig_client=.*\[$(lab_ip client)\]" "$LAB_DIR/main/maillog" ||
	fail "the after-filter did not learn the real client (XFORWARD)"
(($(gate replicated) + $(gate gone_before_replica) >= 4)) || fail "the gate held no message"
(($(gate errors) == 0)) || fail "the gate closed sessions on errors"
echo "relay: pipelining, BDAT, 8BITMIME, 10 MiB, 100 recipients: all delivered intact"

# --- 2. Freeze trials under load --------------------------------------------
trials() {  # trials N -> "trials=N protected=P missing=M"
	lab_exec client python3 "$REPO/lab/gate_trial.py" --server "$main_ip" --trials "$1" \
		--freeze "$(_mt_pid main)" --mirror "$LAB_DIR/backup/mirror" --sink "$SINK_OK" |
		tail -n 1
}
lab_bg client "$LAB_DIR/load.log" smtp-source -M client.lab.test -s 4 -m 1500 -l 3000 \
	-f s@client.lab.test -t load@sink.lab.test "$main_ip:25" >/dev/null
load=$LAB_BG_PID
r=$(trials 100)
echo "sync, under load: $r"
[[ $r == *" missing=0"* && $r == "trials=100 "* ]] || fail "sync: acknowledged messages missing on the standby: $r"
lab_kill "$load" || true

mt_stop main
mt_set_durability main async
mt_start main >/dev/null || fail "mailtwind (async) did not start"
mt_wait_state main live 20 || fail "link not live (async)"
r=$(trials 30)
echo "async (control): $r"
[[ $r =~ missing=([0-9]+) ]] && ((BASH_REMATCH[1] > 0)) ||
	fail "async mode lost nothing: the trial harness cannot tell the modes apart"
mt_stop main
mt_set_durability main sync
mt_start main >/dev/null || fail "mailtwind (sync) did not start"
mt_wait_state main live 20 || fail "link not live (sync)"

# --- 3. Standby down: sync keeps accepting, and says so ----------------------
mt_kill backup
t0=$EPOCHREALTIME
send_mail s@client.lab.test u1@dead.lab.test >/dev/null
t1=$EPOCHREALTIME
echo "first message with the standby dead: $(python3 -c "print(round($t1 - $t0, 2))") s"
mt_wait_state main disconnected 10 || fail "the link did not notice the dead standby"
sleep 1.2  # down for longer than sync_timeout: no more waiting
t0=$EPOCHREALTIME
for i in 2 3 4; do send_mail s@client.lab.test "u$i@dead.lab.test" >/dev/null; done
t1=$EPOCHREALTIME
fast=$(python3 -c "print(($t1 - $t0) / 3 < 0.5)")
echo "with the link known down: $(python3 -c "print(round(($t1 - $t0) / 3, 3))") s per message"
[[ $fast == True ]] || fail "sync mode kept making clients wait with the standby down"
(($(gate unprotected) >= 4)) || fail "unprotected messages not counted: $(gate unprotected)"
(($(gate unprotected_total) >= 4)) || fail "unprotected_total not counted"
mt main status | grep -E '^(gate|protect)'
mt_start backup >/dev/null || fail "standby did not restart"
mt_wait_state main live 20 || fail "link did not come back"
_protected() { (($(gate unprotected) == 0)); }
lab_wait_for 20 _protected || fail "messages stayed unprotected after the standby came back"
echo "standby back: unprotected $(gate unprotected)"

# --- 4. A real crash right after a 250 ---------------------------------------
crash_after_250s 25 "$LAB_DIR/load2.log"
lab_wait_for 60 accepted_all_delivered ||
	fail "messages answered 250 were lost in the crash: $(missing_accepted | head -5)"
dups=$(lab_sink_rcpts "$SINK_OK" | awk '$2 == "crash@sink.lab.test"' | sort | uniq -d | wc -l)
echo "crash after a 250: $accepted accepted, all delivered, $dups delivered twice"
pass
