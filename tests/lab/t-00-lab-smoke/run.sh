#!/bin/bash
#
# t-00-lab-smoke: the lab works.  A client sends 200 messages with smtp-source,
# one with swaks, and main submits one locally with sendmail; Postfix on main
# relays all of them to an smtp-sink on dest.  Every one must arrive, once.
#
#   client (.20) --SMTP--> main (.1, Postfix) --SMTP--> dest (.9, smtp-sink)
#
set -euo pipefail
# shellcheck source=../../../lab/lab.sh
. "$(dirname "$0")/../../../lab/lab.sh"

fail() {
	echo "FAIL: $*"
	exit 1
}

lab_init t-00-lab-smoke
lab_host main 1
lab_host dest 9
lab_host client 20
main_ip=$(lab_ip main)
sink=$LAB_DIR/sink

# Postfix on main relays everything to the sink on dest.
lab_sink_start dest 25 "$sink" >/dev/null
lab_postfix_create main relay=dest
lab_postfix_start main
lab_wait_port client "$main_ip" 25 || fail "Postfix on main does not listen"

# 200 messages from smtp-source, 5 sessions in parallel.
lab_source client "$main_ip" -s 5 -m 200 -l 4096 \
	-f sender@client.lab.test -t rcpt@dest.lab.test ||
	fail "smtp-source"

# One message from swaks.
lab_exec client swaks --silent 2 --server "$main_ip:25" --helo client.lab.test \
	--from sender@client.lab.test --to swaks@dest.lab.test \
	--header "Subject: t-00 swaks" --body "from swaks" ||
	fail "swaks"

# One local submission: sendmail -C <main's config>, inside main.
printf 'Subject: t-00 local\n\nfrom sendmail\n' |
	lab_pf main sendmail -f root@main.lab.test local@dest.lab.test ||
	fail "sendmail"

# Wait until the sink has all of them and main's queue is empty: then nothing
# more can arrive, and the count must be exact.
lab_sink_wait "$sink" 202 60 || fail "not all messages arrived"
lab_wait_for 30 lab_postfix_empty main || fail "main's queue did not drain"

got=$(lab_sink_messages "$sink")
((got == 202)) || fail "sink has $got messages, want 202"

lab_sink_rcpts "$sink" >"$LAB_DIR/rcpts"
dups=$(sort "$LAB_DIR/rcpts" | uniq -d)
[[ -z $dups ]] || fail "delivered twice: $dups"
for want in "rcpt@dest.lab.test 200" "swaks@dest.lab.test 1" "local@dest.lab.test 1"; do
	n=$(awk -v r="${want% *}" '$2 == r' "$LAB_DIR/rcpts" | wc -l)
	((n == ${want#* })) || fail "${want% *}: $n messages, want ${want#* }"
done
grep -q '^- ' "$LAB_DIR/rcpts" && fail "a message without Message-ID"

echo "PASS: 202 messages, each delivered once"
