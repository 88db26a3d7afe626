#!/bin/bash
#
# t-10-vip: submission clients that know one address. The virtual address
# $LAB_NET.100 follows the primary role; the client sends only to it (30
# msg/s), never to main's or backup's own address.
#   1. main, the primary, holds the VIP; backup does not.
#   2. main's processes die (kill -9; its kernel, and so its copy of the
#      address, stay: the worst case). backup takes over, takes the VIP and
#      announces it: the client's neighbour entry for the VIP must name
#      backup's MAC at once (gratuitous ARP), and mail flows again through
#      the same address.
#   3. main's mailtwind comes back as standby: it finds the VIP left behind
#      by the crash and gives it up.
#   4. `mailtwin failback`: the VIP moves back to main with the role, and the
#      client follows it again; backup gives its copy up 2 s later.
#   5. Everything answered 250 through the VIP is delivered.
# With VIP_FAMILY=6 (ctest lab-ipv6.t-10-vip) the same with an IPv6 VIP
# ($LAB_NET6::100/64, every lab host with an IPv6 address too): the
# announcement is an unsolicited neighbour advertisement.
. "$(dirname "$0")/../lib.sh"

V6=0
[[ ${VIP_FAMILY:-4} == 6 ]] && V6=1 && export LAB_IPV6=1
pair_setup t-10
if ((V6)); then
	export MT_VIP=${LAB_NET6}100/64 MT_PREFERRED=main
	target="[${MT_VIP%/*}]"
else
	export MT_VIP=$LAB_NET.100/24 MT_PREFERRED=main
	target=${MT_VIP%/*}
fi
vip=${MT_VIP%/*}
mt_config main primary backup
mt_config backup standby main
# Postfix listens on every address, the VIP included when this node has it.
for h in main backup; do
	postconf -c "$LAB_DIR/$h/etc" -e "inet_interfaces = all"
	((V6 == 0)) || postconf -c "$LAB_DIR/$h/etc" -e "inet_protocols = all" \
		"mynetworks = 127.0.0.0/8, $LAB_NET.0/24, [${LAB_NET6}]/64"
done
mt_gate main
mt_gate backup
pair_start

has_vip() { lab_has_addr "$1" "$vip"; }
lacks_vip() { ! has_vip "$1"; }
mac_of() { ip -n "$(lab_ns "$1")" -o link show dev eth0 | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2; }
# The client's neighbour entry for the VIP points at HOST's MAC.
client_goes_to() {
	[[ $(ip -n "$(lab_ns client)" neigh show "$vip" dev eth0 | grep -o 'lladdr [0-9a-f:]*' | cut -d' ' -f2) == "$(mac_of "$1")" ]]
}

accepted_over() { (($(wc -l <"$log") > $1)); }

# 1. The primary holds it.
lab_wait_for 5 has_vip main || fail "main (primary) does not hold the VIP $vip"
has_vip backup && fail "backup (standby) holds the VIP too"
grep -q "^vip .* held here" <<<"$(mt main status)" || fail "main's status does not say it holds the VIP: $(mt main status | grep ^vip)"
grep -q "^vip .* not here" <<<"$(mt backup status)" || fail "backup's status: $(mt backup status | grep ^vip)"
start_sender 30 "a@sink.lab.test,b@sink.lab.test" "$target"
sleep 2
client_goes_to main || fail "the client does not reach the VIP at main's MAC"
echo "1. main holds $vip; the client sends to it ($(wc -l <"$log") accepted so far)"

# 2. main's processes die; its kernel still has the address.
t0=$EPOCHREALTIME
lab_crash main
lab_wait_for 15 mt_role_is backup primary 2 || fail "backup did not take over"
lab_wait_for 5 has_vip backup || fail "backup (primary now) did not take the VIP"
t1=$EPOCHREALTIME
# The announcement, not the neighbour entry's timeout (30 s here), moves
# the client: within a second of the takeover.
lab_wait_for 2 client_goes_to backup ||
	fail "the client's neighbour entry for $vip still names $(ip -n "$(lab_ns client)" neigh show "$vip") after backup took it (no gratuitous ARP or neighbour advertisement?)"
n=$(wc -l <"$log")
lab_wait_for 10 accepted_over $((n + 10)) || fail "no mail through the VIP after the failover"
echo "2. main killed; backup took over and the VIP in $(python3 -c "print(f'{$t1 - $t0:.2f}')") s;" \
	"the client followed it (longest gap between 250s: $(lab_longest_gap "$log" "$t0") s)"
grep -h 'vip: .* taken' "$LAB_DIR/backup/mailtwind.log" | tail -1 | sed 's/^.* vip: /   backup: /'

# 3. main comes back as standby and drops the stale copy.
has_vip main || fail "the test expects main's kernel to keep the address after kill -9"
mt_start main >/dev/null || fail "mailtwind on main did not restart"
lab_wait_for 20 mt_role_is main standby 2 || fail "main did not rejoin as standby"
lab_wait_for 5 lacks_vip main ||
	fail "main, now standby, still holds the VIP"
echo "3. main rejoined as standby and gave the crash's leftover VIP up"
grep -h 'vip: .* given up' "$LAB_DIR/main/mailtwind.log" | tail -1 | sed 's/^.* vip: /   main: /'
# Alone, backup answered every message at once without a replica (no
# standby since the takeover): its log says so once, not twice per message.
n=$(grep -c "answering 250 anyway" "$LAB_DIR/backup/mailtwind.log" || true)
((n <= 3)) || fail "backup logged \"answering 250 anyway\" $n times while alone (once expected)"
echo "   backup, alone: \"answering 250 anyway\" logged $n time(s)"

# 4. Failback: the VIP goes with the role.
mt_wait_state backup live 20 || fail "backup does not replicate to main"
lab_wait_for 20 mt_handover_done main || fail "main's set-aside queue was not settled"
t2=$EPOCHREALTIME
mt main failback >/dev/null || fail "failback failed"
lab_wait_for 10 mt_role_is main primary 3 || fail "main is not primary at epoch 3"
lab_wait_for 5 has_vip main || fail "main did not take the VIP back"
lab_wait_for 2 client_goes_to main || fail "the client did not follow the VIP back to main"
# The old primary keeps its copy 2 s (clients still sending there get a
# reset, not silence), then gives it up.
lab_wait_for 5 lacks_vip backup ||
	fail "backup, now standby, still holds the VIP"
n=$(wc -l <"$log")
lab_wait_for 10 accepted_over $((n + 10)) || fail "no mail through the VIP after the failback"
echo "4. failback: the VIP is back on main; the client followed (longest gap: $(lab_longest_gap "$log" "$t2") s)"

# 5. Nothing lost.
settle_and_account main "$log" "$SINK_OK"
echo "5. $TOTAL messages answered 250 through $vip: $LOST lost, $DUPS delivered twice (the kill in 2)"
((LOST == 0)) || fail "$LOST accepted messages were lost"
pass
