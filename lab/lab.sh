#!/bin/bash
# shellcheck shell=bash disable=SC2015  # "A && B || die" is meant: die if either fails
#
# lab.sh: a throw-away network of "hosts" with private Postfix instances,
# for mailtwin's tests, benchmarks and demo.  See docs/lab.md.
#
# Source it from a bash script that runs as root:
#
#   . "$REPO/lab/lab.sh"
#   lab_init mytest                   # new lab; cleanup runs on EXIT/INT/TERM/HUP
#   lab_host main 1                   # namespace "$LAB_ID-main", IP $LAB_NET.1
#   lab_host dest 9
#   lab_postfix_create main relay=dest
#   lab_postfix_start main
#   lab_sink_start dest 25 "$LAB_DIR/sink"
#
# A host is a network namespace with lo and eth0; eth0 is one end of a veth pair
# whose other end sits on bridge br0 in the lab's hub namespace.  Nothing is
# created in the root namespace, and nothing outside the lab's own directories
# is read-write: the system Postfix (/etc/postfix, /var/spool/postfix) is never
# touched.  Every Postfix instance has its own config, queue and data
# directories under $LAB_DIR/HOST and is driven with "-c DIR" inside its
# namespace.
#
# Functions
#   lab_init NAME                      create a lab; exports LAB_ID LAB_DIR LAB_NET LAB_NET6
#   lab_host HOST OCTET                add a host with address $LAB_NET.OCTET/24
#                                      (LAB_IPV6=1: also ${LAB_NET6}OCTET/64; lab_ip6 HOST)
#   lab_ip HOST, lab_ns HOST           print a host's address / namespace name
#   lab_exec HOST CMD...               run CMD inside HOST (foreground)
#   lab_bg HOST LOG CMD...             run CMD inside HOST in the background;
#                                      prints its PID, also left in LAB_BG_PID
#   lab_kill PID [KILL]                stop a lab_bg process and its children
#   lab_postfix_create HOST [K=V...]   make a Postfix instance for HOST
#   lab_postfix_conf HOST              print its config directory
#   lab_postconf HOST [ARGS...]        postconf -c CONF ARGS (edits and queries)
#   lab_postfix_start|stop|kill|running HOST
#   lab_postfix_queued HOST [QUEUES]   number of files in its queue (default: maildrop
#                                      incoming active deferred hold)
#   lab_postfix_empty HOST             true if that number is 0
#   lab_postfix_settled HOST           true if no committed message waits in incoming,
#                                      active, deferred or maildrop (hold may keep some)
#   lab_postfix_slow_greeting HOST SECONDS|off  its smtpd greets SECONDS late
#                                      (a saturated server, seen from outside)
#   lab_crash HOST                     kill -9 every process of HOST at once
#   lab_freeze HOST, lab_thaw HOST     SIGSTOP / SIGCONT every process of HOST
#   lab_silence HOST                   HOST dies silently (power cut): its cable is
#                                      cut (no RST, no ICMP) and its processes are
#                                      frozen, never thawed
#   lab_revive HOST                    a silenced HOST boots: its processes are
#                                      killed, its cable plugged back in
#   lab_netem HOST DELAY_MS JITTER_MS LOSS_PCT   delay (uniform +/- jitter) and
#                                      drop packets HOST sends (this kernel has no
#                                      sch_netem: iptables NFQUEUE + lab/netdelay)
#   lab_netem_off HOST
#   lab_pf HOST TOOL [ARGS...]         run a Postfix tool (postqueue, postsuper,
#                                      postcat, sendmail, postfix...) for
#                                      HOST's instance, inside HOST
#   lab_sink_start HOST PORT DIR [OPT...]  smtp-sink on HOST's IP:PORT, one file
#                                      per message in DIR; prints its PID
#   lab_powerfs DIR / lab_powercut DIR  DIR on a disk that loses unsynced data
#                                      on command (lab/powerfs)
#   lab_tmpfs DIR SIZE                 DIR on a tmpfs of its own (a disk that
#                                      fills up); unmounted at cleanup
#   lab_late_sink_start HOST PORT DIR [DELAY]  the same with lab/late_sink.py:
#                                      stores, then answers 250 DELAY s later
#   lab_sink_messages DIR              number of complete messages in DIR
#   lab_sink_rcpts DIR                 one line "MESSAGE-ID RECIPIENT" per
#                                      delivered recipient
#   lab_sink_wait DIR COUNT [TIMEOUT]  wait until DIR holds COUNT messages
#   lab_account LOG SINK_DIR...        sender.py's 250s vs the sinks: TOTAL LOST DUPS
#   lab_longest_gap LOG FROM [TO]      the longest time without a 250 in sender.py's
#                                      LOG (--times) from FROM to TO (default now)
#   lab_json JSON PATH...              fields of a JSON text by dotted path, one line
#                                      each (lab/json_get.py)
#   lab_source HOST SERVER[:PORT] [smtp-source options...]
#   lab_dns_start HOST DOMAINS MXHOST:PREF...  dnsmasq on HOST: A records of the
#                                      lab's hosts (NAME.lab.test), MX records
#                                      of DOMAINS; prints its PID
#   lab_resolver HOST DNSHOST          HOST resolves names with DNSHOST's server
#                                      (/etc/netns/NS/resolv.conf)
#   lab_mx_sender_create HOST DNSHOST [K=V...]  a Postfix that sends by MX,
#                                      Postfix's default retry times unless K=V
#   lab_mx_account LOG SENDER SINK_DIR...  mail sent by MX: prints "sent=..
#                                      delivered=.. lost=.. duplicated=..
#                                      refused_both=.. sender_deferred=.. may_dup=.."
#   lab_mx_relayed SENDER              "via_main=N via_backup=N": messages SENDER
#                                      delivered through each MX host
#   lab_wait_port HOST IP PORT [TIMEOUT]
#   lab_wait_for TIMEOUT CMD...        retry CMD until it succeeds
#   lab_cleanup                        stop and remove everything (idempotent)
#
# Run as a program: "lab.sh list" shows labs, "lab.sh gc" removes the labs
# whose owning shell is gone (after a kill -9, for example).
#
# Setup functions print "lab: error: ..." and exit the calling shell when they
# fail (cleanup still runs from the trap).  Predicates and waits return 1.
# Variables: LAB_DIR (where the lab's files go; default /tmp/mt-lab-$LAB_ID),
# LAB_KEEP=1 (keep LAB_DIR after cleanup, for debugging), LAB_PY (the python3
# that runs the lab's Python tools; default /usr/bin/python3).

# Bookkeeping of every lab lives here, one directory per LAB_ID: it is what
# makes cleanup (and "lab.sh gc") exact.
_LAB_RUN=/run/mailtwin-lab
# This directory (the lab's Python tools), and the python3 that runs them:
# Debian's, not a shim in PATH (pyenv's costs 0.2 s and more per start).
_LAB_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB_PY=${LAB_PY:-$(if [[ -x /usr/bin/python3 ]]; then echo /usr/bin/python3; else command -v python3; fi)}

_lab_say() { printf 'lab: %s\n' "$*" >&2; }
_lab_die() {
	_lab_say "error: $*"
	exit 1
}

# _lab_state: print the state directory of the current lab.
_lab_state() {
	[[ -n ${LAB_ID:-} && -d $_LAB_RUN/${LAB_ID:-} ]] ||
		_lab_die "no lab: call lab_init first"
	echo "$_LAB_RUN/$LAB_ID"
}

# _lab_now_us: microseconds since the epoch.
_lab_now_us() { echo "${EPOCHREALTIME/./}"; }

#
# Processes.  A process is named "PID:STARTTIME", so that a PID which was
# reused by somebody else is never signalled.
#

# _lab_proc PID: print "PID:STARTTIME" if PID is alive (zombies count as dead).
_lab_proc() {
	local stat
	# Not $(<file): under set -e, bash exits on that form's failed redirection
	# even where errexit is off (a process that just ended).
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	local -a f
	read -ra f <<<"$stat"
	[[ ${f[0]} != Z && ${f[0]} != X ]] || return 1
	echo "$1:${f[19]}"
}

# _lab_alive PID:START: true if that very process still runs.
_lab_alive() {
	[[ $(_lab_proc "${1%%:*}") == "$1" ]]
}

# _lab_descendants PID...: print "PID:START" of every descendant.
_lab_descendants() {
	local p
	for p in $(ps -e -o pid= -o ppid= | awk -v roots="$*" '
		BEGIN { n = split(roots, r, " "); for (i = 1; i <= n; i++) want[r[i]] = 1 }
		{ parent[$1] = $2 }
		END {
			do {
				changed = 0
				for (p in parent)
					if (!(p in want) && (parent[p] in want)) { want[p] = 1; out[p] = 1; changed = 1 }
			} while (changed)
			for (p in out) print p
		}'); do
		_lab_proc "$p" || true
	done
}

# _lab_signal SIG PROC...: send SIG to each PID:START that is still alive.
_lab_signal() {
	local sig=$1 p
	shift
	for p in "$@"; do
		_lab_alive "$p" && { kill "-$sig" "${p%%:*}" 2>/dev/null || true; }
	done
	return 0
}

# _lab_wait_dead SECONDS PROC...: wait until none of them runs.
_lab_wait_dead() {
	local deadline=$(($(_lab_now_us) + $1 * 1000000)) p
	shift
	while :; do
		for p in "$@"; do
			_lab_alive "$p" && break
			p=
		done
		[[ -z ${p:-} ]] && return 0
		(($(_lab_now_us) < deadline)) || return 1
		sleep 0.05
	done
}

# _lab_stop_proc PID:START [KILL]: TERM the process and its descendants, wait
# up to 3 s, then KILL what is left.  With KILL, kill at once.
_lab_stop_proc() {
	local proc=$1 pid=${1%%:*}
	_lab_alive "$proc" || { _lab_reap "$pid"; return 0; }
	local -a all
	mapfile -t all < <(_lab_descendants "$pid")
	all=("$proc" "${all[@]}")
	if [[ ${2:-} != KILL ]]; then
		_lab_signal TERM "${all[@]}"
		_lab_wait_dead 3 "${all[@]}" && { _lab_reap "$pid"; return 0; }
	fi
	_lab_signal KILL "${all[@]}"
	_lab_wait_dead 3 "${all[@]}" || _lab_say "pid $pid survived kill -9"
	_lab_reap "$pid"
	return 0
}

# _lab_reap PID: collect the exit status of a dead child of this shell, so that
# it does not linger as a zombie.  Does nothing for other processes.
_lab_reap() {
	_lab_proc "$1" >/dev/null && return 0
	wait "$1" 2>/dev/null || true
}

# _lab_tty CMD...: run CMD on a pseudo-terminal.  postfix(1) prints its errors
# only when stderr is a terminal; otherwise it fails silently.
_lab_tty() {
	local cmd
	printf -v cmd '%q ' "$@"
	script -qec "$cmd" /dev/null </dev/null | tr -d '\r'
	return "${PIPESTATUS[0]}"
}

#
# The lab.
#

# lab_init NAME: create a lab.  NAME only seeds the choice of LAB_ID, which
# also picks the subnet: LAB_ID=mtXX <=> LAB_NET=10.231.<0xXX>.  Installs the
# cleanup trap on EXIT, INT, TERM and HUP (replacing the caller's traps).
lab_init() {
	local name=${1:?usage: lab_init NAME}
	[[ ${_LAB_OWNER:-} != "$BASHPID" || -n ${_LAB_CLEANED:-} ]] ||
		_lab_die "lab_init: this shell already has lab $LAB_ID"
	((EUID == 0)) || _lab_die "the lab needs root"
	local c
	for c in ip postconf postfix smtp-sink smtp-source script perl; do
		command -v "$c" >/dev/null || _lab_die "missing command: $c"
	done

	# A LAB_DIR inherited from a parent lab is not a request for this lab.
	local dir=${LAB_DIR:-}
	if [[ -n $dir && -n ${LAB_ID:-} && -f $_LAB_RUN/${LAB_ID:-}/dir &&
		$(<"$_LAB_RUN/$LAB_ID/dir") == "$dir" ]]; then
		dir=
	fi
	if [[ -n $dir ]]; then
		[[ $dir =~ ^/[A-Za-z0-9._/+-]+$ ]] ||
			_lab_die "LAB_DIR must be an absolute path of [A-Za-z0-9._/+-]: $dir"
		[[ ! -e $dir || -z $(ls -A "$dir") ]] || _lab_die "LAB_DIR $dir is not empty"
	fi

	# Reserve an id: mkdir of the state directory is atomic, so parallel labs
	# cannot pick the same one.
	mkdir -p "$_LAB_RUN"
	local seed n i id=
	seed=$(printf '%s.%s' "$name" "$$" | cksum | cut -d' ' -f1)
	for ((i = 0; i < 250; i++)); do
		n=$(((seed + i) % 250 + 1))
		printf -v id 'mt%02x' "$n"
		compgen -G "/run/netns/$id-*" >/dev/null && continue
		[[ -n $dir || ! -e /tmp/mt-lab-$id ]] || continue
		mkdir "$_LAB_RUN/$id" 2>/dev/null && break
		id=
	done
	[[ -n $id ]] || _lab_die "no free lab id (see: lab.sh list)"

	export LAB_ID=$id LAB_NET=10.231.$n LAB_NET6=fd00:231:$n::
	_LAB_OWNER=$BASHPID
	_LAB_CLEANED=
	local st=$_LAB_RUN/$id
	_lab_proc "$BASHPID" >"$st/owner"
	: >"$st/netns"
	: >"$st/hosts"
	: >"$st/pids"
	: >"$st/postfix"
	trap '_lab_on_exit' EXIT
	trap '_lab_on_signal 129' HUP
	trap '_lab_on_signal 130' INT
	trap '_lab_on_signal 143' TERM

	# The lab directory: world-traversable, because Postfix daemons run as the
	# postfix user and must reach their queue directory inside it.
	if [[ -n $dir ]]; then
		[[ -d $dir ]] || echo 1 >"$st/made_dir"
		mkdir -p "$dir"
	else
		dir=/tmp/mt-lab-$id
		mkdir "$dir" || _lab_die "cannot create $dir"
		echo 1 >"$st/made_dir"
	fi
	chmod 755 "$dir"
	LAB_DIR=$(cd "$dir" && pwd -P)
	export LAB_DIR
	echo "$LAB_DIR" >"$st/dir"
	runuser -u postfix -- test -x "$LAB_DIR" ||
		_lab_die "user postfix cannot enter $LAB_DIR (check the modes of its parents)"

	# The hub: a namespace holding only the bridge.
	_lab_add_ns "$id-hub"
	ip -n "$id-hub" link set lo up &&
		ip -n "$id-hub" link add br0 type bridge forward_delay 0 &&
		ip -n "$id-hub" link set br0 up ||
		_lab_die "cannot create the bridge in $id-hub"
	_lab_say "lab $LAB_ID: dir $LAB_DIR, net $LAB_NET.0/24"
}

# _lab_add_ns NS: create a namespace and record it for cleanup.
_lab_add_ns() {
	local st
	st=$(_lab_state) || exit 1
	ip netns add "$1" || _lab_die "cannot create namespace $1"
	echo "$1" >>"$st/netns"
}

# _lab_on_exit, _lab_on_signal CODE: the traps.  Only the shell that called
# lab_init cleans up (subshells do not run them, but be sure).
_lab_on_exit() {
	[[ ${_LAB_OWNER:-} == "$BASHPID" ]] || return 0
	lab_cleanup
}
_lab_on_signal() {
	trap - HUP INT TERM
	_lab_on_exit
	exit "$1"
}

# lab_host HOST OCTET: a host called HOST ([a-z][a-z0-9-]{0,9}), in namespace
# "$LAB_ID-HOST", with eth0 = $LAB_NET.OCTET/24 (and, with LAB_IPV6=1,
# ${LAB_NET6}OCTET/64) and lo up.
lab_host() {
	local host=${1:?usage: lab_host HOST OCTET} octet=${2:?usage: lab_host HOST OCTET}
	local st
	st=$(_lab_state) || exit 1
	[[ $host =~ ^[a-z][a-z0-9-]{0,9}$ && $host != hub ]] ||
		_lab_die "bad host name '$host': [a-z][a-z0-9-]{0,9}, not 'hub'"
	[[ $octet =~ ^[0-9]+$ ]] && ((octet >= 1 && octet <= 254)) ||
		_lab_die "bad octet '$octet': 1..254"
	local ns=$LAB_ID-$host ip=$LAB_NET.$octet
	! grep -q "^$host " "$st/hosts" || _lab_die "host $host exists"
	! grep -q " $ip\$" "$st/hosts" || _lab_die "address $ip is taken"
	_lab_add_ns "$ns"
	# The veth pair is made inside the hub, so its names cannot clash with
	# anything outside this lab.
	ip -n "$LAB_ID-hub" link add "v-$host" type veth peer name eth0 netns "$ns" &&
		ip -n "$LAB_ID-hub" link set "v-$host" master br0 up &&
		ip -n "$ns" link set lo up &&
		ip -n "$ns" addr add "$ip/24" dev eth0 &&
		{ [[ ${LAB_IPV6:-0} != 1 ]] || ip -n "$ns" -6 addr add "$LAB_NET6$octet/64" dev eth0 nodad; } &&
		ip -n "$ns" link set eth0 up ||
		_lab_die "cannot wire host $host"
	echo "$host $ip" >>"$st/hosts"
}

# lab_ip6 HOST: HOST's IPv6 address (with LAB_IPV6=1: $LAB_NET6 and HOST's
# octet, /64, added without duplicate address detection).
lab_ip6() {
	local ip
	ip=$(lab_ip "${1:?usage: lab_ip6 HOST}") || return 1
	echo "$LAB_NET6${ip##*.}"
}

# lab_ip HOST: print HOST's address.
lab_ip() {
	local st ip
	st=$(_lab_state) || exit 1
	ip=$(awk -v h="${1:?usage: lab_ip HOST}" '$1 == h { print $2 }' "$st/hosts")
	[[ -n $ip ]] || _lab_die "no host '$1'"
	echo "$ip"
}

# lab_ns HOST: print HOST's namespace ("hub" is the hub).
lab_ns() {
	local host=${1:?usage: lab_ns HOST}
	if [[ $host != hub ]]; then lab_ip "$host" >/dev/null || return 1; fi
	echo "$LAB_ID-$host"
}

# lab_has_addr HOST ADDR: HOST's eth0 has the address ADDR (IPv4 or IPv6,
# any prefix). Not `ip ... | grep -q`: ip writes a line at a time, grep -q
# exits at its first match, and under pipefail ip's SIGPIPE on the next
# line would fail the check although the address is there.
lab_has_addr() {
	local ns
	ns=$(lab_ns "${1:?usage: lab_has_addr HOST ADDR}") || return 1
	grep -q " ${2:?usage: lab_has_addr HOST ADDR}/" <<<"$(ip -n "$ns" -o addr show dev eth0)"
}

# lab_exec HOST CMD...: run CMD inside HOST.
lab_exec() {
	local ns
	ns=$(lab_ns "${1:?usage: lab_exec HOST CMD...}") || exit 1
	shift
	ip netns exec "$ns" "$@"
}

# lab_bg HOST LOG CMD...: start CMD inside HOST in the background, output
# appended to LOG.  Prints the PID and sets LAB_BG_PID.  Cleanup (or lab_kill)
# TERMs it and its children, and KILLs them 3 s later.
lab_bg() {
	local host=${1:?usage: lab_bg HOST LOG CMD...} log=${2:?usage: lab_bg HOST LOG CMD...}
	shift 2
	local ns st proc
	st=$(_lab_state) || exit 1
	ns=$(lab_ns "$host") || exit 1
	ip netns exec "$ns" "$@" </dev/null >>"$log" 2>&1 &
	LAB_BG_PID=$!
	# ip netns exec execs CMD, so $! is CMD itself.
	proc=$(_lab_proc "$LAB_BG_PID") || proc="$LAB_BG_PID:gone"
	echo "$proc $host $*" >>"$st/pids"
	echo "$LAB_BG_PID"
}

# lab_kill PID [KILL]: stop a process started by lab_bg, and its children.
lab_kill() {
	local pid=${1:?usage: lab_kill PID [KILL]} st proc
	st=$(_lab_state) || exit 1
	proc=$(awk -v p="$pid" 'index($1, p ":") == 1 { print $1 }' "$st/pids" | tail -1)
	[[ -n $proc ]] || _lab_die "lab_kill: $pid was not started by lab_bg"
	_lab_stop_proc "$proc" "${2:-}"
}

# lab_wait_for TIMEOUT CMD...: run CMD every 0.1 s until it succeeds; return 1
# after TIMEOUT seconds.
lab_wait_for() {
	local timeout=${1:?usage: lab_wait_for TIMEOUT CMD...}
	shift
	local deadline=$(($(_lab_now_us) + timeout * 1000000))
	until "$@"; do
		(($(_lab_now_us) < deadline)) || return 1
		sleep 0.1
	done
}

# lab_wait_port HOST IP PORT [TIMEOUT]: wait (default 10 s) until a TCP
# connection from HOST to IP:PORT succeeds.
lab_wait_port() {
	local host=${1:?usage: lab_wait_port HOST IP PORT [TIMEOUT]} ip=${2:?} port=${3:?}
	# shellcheck disable=SC2016  # $0 and $1 belong to the inner bash
	lab_wait_for "${4:-10}" lab_exec "$host" timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$ip" "$port" 2>/dev/null ||
		{ _lab_say "nothing listens on $ip:$port (seen from $host)"; return 1; }
}

#
# Postfix instances: $LAB_DIR/HOST/{etc,spool,data,mail,maillog}.
#

# lab_postfix_create HOST [KEY=VALUE...]: write HOST's main.cf and master.cf
# (every service unchrooted) and create its queue.  KEY=VALUE pairs are
# main.cf settings applied last with "postconf -e"; "relay=HOST2[:PORT]" is
# short for "relayhost = [IP of HOST2]:PORT" (port 25 by default).
lab_postfix_create() {
	local host=${1:?usage: lab_postfix_create HOST [KEY=VALUE...]}
	shift
	local ip st
	ip=$(lab_ip "$host") || exit 1
	st=$(_lab_state) || exit 1
	local d=$LAB_DIR/$host
	local conf=$d/etc
	[[ ! -e $conf/main.cf ]] || _lab_die "host $host already has Postfix"

	# Modes and owners as in /etc/postfix/postfix-files; the queue directory
	# must exist before "postfix check", which creates the rest.
	install -d -m 755 "$d" "$conf"
	install -d -m 755 -o root -g root "$d/spool"
	install -d -m 700 -o postfix "$d/data"
	install -d -m 1777 "$d/mail"
	# postfix start runs postsuper, which logs as postfix: a root-owned
	# maillog fails the start ("Postfix integrity check failed!").
	install -m 644 -o postfix -g postfix /dev/null "$d/maillog"
	cp /etc/postfix/master.cf "$conf/master.cf"
	: >"$conf/main.cf"

	local -a set=(
		"compatibility_level = 3.6"
		"queue_directory = $d/spool"
		"data_directory = $d/data"
		"mail_spool_directory = $d/mail"
		"myhostname = $host.lab.test"
		"mydestination = $host.lab.test, localhost"
		"inet_interfaces = $ip, 127.0.0.1"
		"inet_protocols = ipv4"
		"mynetworks = 127.0.0.0/8, $LAB_NET.0/24"
		"maillog_file = $d/maillog"
		"maillog_file_prefixes = $LAB_DIR"
		"enable_long_queue_ids = yes"
		"alias_maps ="
		"alias_database ="
		"biff = no"
		"smtpd_peername_lookup = no"
		"smtp_dns_support_level = disabled"
		"smtp_connect_timeout = 5s"
	)
	local kv to port key i
	for kv in "$@"; do
		[[ $kv == *=* ]] || _lab_die "lab_postfix_create: not KEY=VALUE: $kv"
		if [[ $kv == relay=* ]]; then
			to=${kv#relay=}
			port=25
			[[ $to == *:* ]] && port=${to#*:} to=${to%%:*}
			ip=$(lab_ip "$to") || exit 1
			kv="relayhost = [$ip]:$port"
		fi
		# A setting of the caller's replaces the lab's own (postconf -e
		# would warn "ignoring earlier request").
		key=${kv%%=*}
		key=${key%% *}
		for i in "${!set[@]}"; do
			[[ ${set[i]%% *} == "$key" ]] && unset 'set[i]'
		done
		set+=("$kv")
	done
	postconf -c "$conf" -e "${set[@]}" || _lab_die "postconf -e failed for $host"
	postconf -c "$conf" -F '*/*/chroot = n' || _lab_die "postconf -F failed for $host"
	_lab_pf_cool "$conf"
	# Report typos ("unused parameter"); inside the host, as postconf -n
	# checks inet_interfaces.
	ip netns exec "$LAB_ID-$host" postconf -c "$conf" -n 2>&1 >/dev/null | sed 's/^/lab: /' >&2

	echo "$host" >>"$st/postfix"
	local out
	out=$(_lab_tty ip netns exec "$LAB_ID-$host" postfix -c "$conf" check) ||
		_lab_die "postfix check failed for $host: $out"
	[[ -z $out ]] || sort -u <<<"$out" | sed "s/^/lab: $host: /" >&2
}

# lab_postfix_conf HOST: print HOST's Postfix config directory.
lab_postfix_conf() {
	local conf=${LAB_DIR:?no lab: call lab_init first}/${1:?usage: lab_postfix_conf HOST}/etc
	[[ -f $conf/main.cf ]] || _lab_die "host $1 has no Postfix (lab_postfix_create)"
	echo "$conf"
}

# _lab_pf_cool CONF: set the mtime of CONF/*.cf that changed in the last 2 s
# back by 2 s.  Every Postfix program re-reads a main.cf whose mtime is not
# older than one second, every 0.3 s, until it is (dict_load_file_xt(), "let
# it cool down"): each edit would stall the next command for up to 2 s.
# postconf writes the file whole (rename), so the wait protects nothing here.
_lab_pf_cool() {
	local now f
	now=$(date +%s)
	for f in "$1"/main.cf "$1"/master.cf; do
		(($(stat -c %Y "$f") >= now - 2)) && touch -m -d "@$((now - 2))" "$f"
	done
	return 0
}

# lab_postconf HOST [POSTCONF ARGS...]: postconf -c CONF ARGS inside HOST,
# for queries and edits ("-e KEY=VALUE", "-M", "-F"...).  Use it rather than
# plain postconf -e: it backdates the files it changed (see _lab_pf_cool).
lab_postconf() {
	local host=${1:?usage: lab_postconf HOST [ARGS...]} conf rc=0
	shift
	conf=$(lab_postfix_conf "$host") || exit 1
	lab_exec "$host" postconf -c "$conf" "$@" || rc=$?
	_lab_pf_cool "$conf"
	return "$rc"
}

# lab_pf HOST TOOL [ARGS...]: run a Postfix command for HOST's instance inside
# HOST: "-c CONF" (sendmail, mailq: "-C CONF") goes in front of ARGS.  The
# postfix command runs on a pseudo-terminal so that its errors are visible.
lab_pf() {
	local host=${1:?usage: lab_pf HOST TOOL [ARGS...]} tool=${2:?usage: lab_pf HOST TOOL [ARGS...]}
	shift 2
	local conf
	conf=$(lab_postfix_conf "$host") || exit 1
	case $tool in
	postfix) _lab_tty ip netns exec "$LAB_ID-$host" postfix -c "$conf" "$@" ;;
	sendmail | mailq | newaliases) lab_exec "$host" "$tool" -C "$conf" "$@" ;;
	*) lab_exec "$host" "$tool" -c "$conf" "$@" ;;
	esac
}

# _lab_pf_master HOST: print the PID of HOST's running master: the one in
# pid/master.pid, if it is a live "master" working in HOST's queue directory.
_lab_pf_master() {
	local spool=$LAB_DIR/$1/spool pid comm
	{ read -r pid <"$spool/pid/master.pid"; } 2>/dev/null || return 1
	[[ $pid =~ ^[0-9]+$ ]] && _lab_proc "$pid" >/dev/null || return 1
	comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
	[[ $comm == master && $(readlink "/proc/$pid/cwd") == "$spool" ]] || return 1
	echo "$pid"
}

# _lab_pf_procs HOST: print "PID:START" of every process of HOST's instance:
# the master's process group (the master is a session leader) and whatever
# works in HOST's queue directory (every Postfix program chdirs there).
_lab_pf_procs() {
	local spool=$LAB_DIR/$1/spool master p
	{
		if master=$(_lab_pf_master "$1"); then
			ps -e -o pid= -o pgid= | awk -v g="$master" '$2 == g { print $1 }'
		fi
		find /proc -mindepth 2 -maxdepth 2 -name cwd -lname "$spool" 2>/dev/null |
			cut -d/ -f3
	} | sort -un | while read -r p; do _lab_proc "$p" || true; done
}

# lab_postfix_running HOST: true if HOST's master runs.
lab_postfix_running() {
	_lab_pf_master "${1:?usage: lab_postfix_running HOST}" >/dev/null
}

# lab_postfix_start HOST: postfix start; fails unless the master runs after.
lab_postfix_start() {
	local host=${1:?usage: lab_postfix_start HOST} out
	lab_postfix_conf "$host" >/dev/null
	if ! out=$(lab_pf "$host" postfix start); then
		_lab_say "$out"
		tail -n 5 "$LAB_DIR/$host/maillog" | sed 's/^/lab: maillog: /' >&2
		_lab_die "postfix start failed on $host"
	fi
	lab_postfix_running "$host" || _lab_die "no master running on $host after postfix start"
}

# lab_postfix_stop HOST: postfix stop, then wait (10 s) until every process of
# the instance is gone; KILL what is left after that.
lab_postfix_stop() {
	local host=${1:?usage: lab_postfix_stop HOST}
	lab_postfix_conf "$host" >/dev/null
	local -a procs
	mapfile -t procs < <(_lab_pf_procs "$host")
	((${#procs[@]})) || return 0
	lab_postfix_running "$host" && { lab_pf "$host" postfix stop >/dev/null || true; }
	_lab_wait_dead 10 "${procs[@]}" && return 0
	_lab_say "postfix on $host did not stop in 10 s; killing it"
	lab_postfix_kill "$host"
}

# lab_postfix_kill HOST: kill -9 HOST's master and all its children, as a
# crash would.  The queue (and pid/master.pid) stay as they are.
lab_postfix_kill() {
	local host=${1:?usage: lab_postfix_kill HOST} master
	lab_postfix_conf "$host" >/dev/null
	# Freeze the master first so that it cannot spawn anything new.
	master=$(_lab_pf_master "$host") && { kill -STOP "$master" 2>/dev/null || true; }
	local -a procs
	mapfile -t procs < <(_lab_pf_procs "$host")
	((${#procs[@]})) || return 0
	_lab_signal KILL "${procs[@]}"
	_lab_wait_dead 5 "${procs[@]}" || _lab_die "postfix on $host survived kill -9"
}

# lab_crash HOST: the host dies - every process in its namespace (all of them
# started by this lab: Postfix, mailtwind, sinks) gets SIGKILL in one kill(1).
lab_crash() {
	local host=${1:?usage: lab_crash HOST} ns round
	ns=$(lab_ns "$host") || return 1
	# Several rounds: a process forked while the others were being killed
	# (a Postfix master daemonizing, say) is not in the first list, and
	# would outlive the "crash".
	for round in 1 2 3 4 5; do
		_lab_crash_round "$ns" || return 0
	done
	[[ -z $(ip netns pids "$ns") ]] || _lab_die "processes of $host keep appearing after kill -9"
}
# _lab_crash_round NS: kill -9 of every process in NS, waited for; 1 if
# there was none.
_lab_crash_round() {
	local -a pids procs=()
	local p
	mapfile -t pids < <(ip netns pids "$1")
	((${#pids[@]})) || return 1
	for p in "${pids[@]}"; do
		p=$(_lab_proc "$p") || continue
		procs+=("$p")
	done
	# stderr off while they die and are reaped: bash would print "Killed" for
	# each of its own background jobs among them.
	{
		kill -KILL "${pids[@]}"
		_lab_wait_dead 5 "${procs[@]}" || echo "survivors" >"$LAB_DIR/.crash-survivors"
		for p in "${procs[@]}"; do _lab_reap "${p%%:*}"; done
	} 2>/dev/null || true
	[[ ! -e $LAB_DIR/.crash-survivors ]] || { rm -f "$LAB_DIR/.crash-survivors"; _lab_die "processes in $1 survived kill -9"; }
	return 0
}

# lab_freeze HOST / lab_thaw HOST: SIGSTOP / SIGCONT every process of HOST
# (a hung host that later wakes up).
lab_freeze() {
	local ns
	ns=$(lab_ns "${1:?usage: lab_freeze HOST}") || return 1
	ip netns pids "$ns" | xargs -r kill -STOP 2>/dev/null || true
}
lab_thaw() {
	local ns
	ns=$(lab_ns "${1:?usage: lab_thaw HOST}") || return 1
	ip netns pids "$ns" | xargs -r kill -CONT 2>/dev/null || true
}

# lab_silence HOST: HOST dies silently, as a host does whose power is cut, whose
# kernel panics or whose cable is pulled: no RST, no ICMP, no ARP, nothing
# at all. Its veth's port on the hub's bridge goes down (the cable: every
# frame to and from HOST is dropped, in both directions), then every process
# of HOST is frozen (SIGSTOP) and never thawed: nothing of it runs on, and
# its kernel, which would still answer, is out of reach. lab_revive brings
# it back; cleanup kills what is frozen.
lab_silence() {
	local host=${1:?usage: lab_silence HOST} st
	st=$(_lab_state) || exit 1
	lab_ns "$host" >/dev/null || return 1
	ip -n "$LAB_ID-hub" link set "v-$host" down || _lab_die "cannot cut $host's cable"
	echo "$host" >>"$st/silenced"
	lab_freeze "$host"
}

# lab_revive HOST: a silenced HOST boots again: its frozen processes are
# killed (lab_crash: never thawed, so none of them acts on its old state) and
# its cable is plugged back in. Start its services again after.
lab_revive() {
	local host=${1:?usage: lab_revive HOST} st
	st=$(_lab_state) || exit 1
	lab_crash "$host"
	ip -n "$LAB_ID-hub" link set "v-$host" up || _lab_die "cannot plug $host's cable back in"
	sed -i "/^$host\$/d" "$st/silenced"
}

# lab_cut HOST NAME PEER...: a partition seen from HOST: every packet between
# HOST and each PEER (lab hosts) is dropped in HOST's own firewall (nft table
# inet NAME), both ways, silently (no RST, no ICMP); HOST's other peers
# (clients, destinations) still reach it. lab_heal HOST NAME ends it.
lab_cut() {
	local host=${1:?usage: lab_cut HOST NAME PEER...} name=${2:?usage: lab_cut HOST NAME PEER...} p rules=""
	shift 2
	for p in "$@"; do
		rules+="ip saddr $(lab_ip "$p") drop; "
	done
	local out=${rules//saddr/daddr}
	lab_exec "$host" nft -f - <<-EOT || _lab_die "lab_cut: nft failed on $host"
		table inet $name {
		  chain in { type filter hook input priority 0; $rules}
		  chain out { type filter hook output priority 0; $out}
		}
	EOT
}
lab_heal() { lab_exec "${1:?usage: lab_heal HOST NAME}" nft delete table inet "${2:?}"; }

# lab_cut_port HOST NAME PORT: every TCP packet to or from PORT (either end)
# is dropped in HOST's own firewall (nft table inet NAME), silently: one
# service's connections are cut while the host answers all else (SMTP
# probes, say). lab_heal HOST NAME ends it.
lab_cut_port() {
	local host=${1:?usage: lab_cut_port HOST NAME PORT} name=${2:?usage: lab_cut_port HOST NAME PORT}
	local port=${3:?usage: lab_cut_port HOST NAME PORT} rules
	rules="tcp sport $port drop; tcp dport $port drop; "
	lab_exec "$host" nft -f - <<-EOT || _lab_die "lab_cut_port: nft failed on $host"
		table inet $name {
		  chain in { type filter hook input priority 0; $rules}
		  chain out { type filter hook output priority 0; $rules}
		}
	EOT
}

# lab_etcd_cluster HOST...: a real etcd cluster (Debian's etcd-server), one
# member per lab host (made with lab_host first), each with its own data
# directory $LAB_DIR/HOST/etcd, client URL http://IP:2379, peer URL
# http://IP:2380; waits (30 s) until the cluster has a leader and answers a
# write. The system's etcd service is never used. Log: $LAB_DIR/etcd-HOST.log.
# With LAB_ETCD_TLS=1 the client URLs are https, and a client must show a
# certificate of the lab's etcd CA ($LAB_DIR/etcd-ca/ca.pem, made here;
# lab_etcd_client_cert NAME makes one): etcd's --client-cert-auth.
lab_etcd_cluster() {
	local h initial=""
	for h in "$@"; do initial+="${initial:+,}$h=http://$(lab_ip "$h"):2380"; done
	LAB_ETCD_INITIAL=$initial
	if [[ ${LAB_ETCD_TLS:-0} == 1 ]]; then
		local ca=$LAB_DIR/etcd-ca
		mkdir -p "$ca"
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
			-subj "/CN=lab etcd CA" -keyout "$ca/ca.key" -out "$ca/ca.pem" 2>/dev/null ||
			_lab_die "cannot make the etcd CA"
		for h in "$@"; do _lab_etcd_cert "$h" "IP:$(lab_ip "$h")"; done
		lab_etcd_client_cert etcdctl
	fi
	for h in "$@"; do lab_etcd_start "$h"; done
	lab_wait_for 30 lab_etcd_healthy "$@" || _lab_die "the etcd cluster ($*) did not come up: $(tail -n 5 "$LAB_DIR/etcd-$1.log")"
}

# _lab_etcd_cert NAME SAN: a certificate of the lab's etcd CA for NAME
# ($LAB_DIR/etcd-ca/NAME.pem, .key, mode 0600), subjectAltName SAN.
_lab_etcd_cert() {
	local ca=$LAB_DIR/etcd-ca name=$1 san=$2
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" \
		-keyout "$ca/$name.key" -out "$ca/$name.csr" 2>/dev/null &&
		openssl x509 -req -in "$ca/$name.csr" -CA "$ca/ca.pem" -CAkey "$ca/ca.key" \
			-CAcreateserial -days 2 -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$san") \
			-out "$ca/$name.pem" 2>/dev/null ||
		_lab_die "cannot make the etcd certificate of $name"
	rm -f "$ca/$name.csr"
	chmod 600 "$ca/$name.key"
}

# lab_etcd_client_cert NAME: a client certificate of the lab's etcd CA
# (LAB_ETCD_TLS=1): $LAB_DIR/etcd-ca/NAME.pem and NAME.key.
lab_etcd_client_cert() { _lab_etcd_cert "${1:?usage: lab_etcd_client_cert NAME}" "DNS:$1"; }

_lab_etcd_scheme() { if [[ ${LAB_ETCD_TLS:-0} == 1 ]]; then echo https; else echo http; fi; }

# lab_etcd_start HOST: (re)starts HOST's etcd member (after lab_etcd_cluster
# made the cluster, or lab_etcd_stop stopped it): same data directory, so it
# rejoins with what it had. Prints nothing; its PID is in LAB_ETCD_PID_HOST.
lab_etcd_start() {
	local h=${1:?usage: lab_etcd_start HOST} ip
	ip=$(lab_ip "$h")
	mkdir -p "$LAB_DIR/$h/etcd"
	chmod 700 "$LAB_DIR/$h/etcd"
	local s tls=()
	s=$(_lab_etcd_scheme)
	[[ $s == http ]] || tls=(--cert-file "$LAB_DIR/etcd-ca/$h.pem" --key-file "$LAB_DIR/etcd-ca/$h.key"
		--client-cert-auth --trusted-ca-file "$LAB_DIR/etcd-ca/ca.pem")
	lab_bg "$h" "$LAB_DIR/etcd-$h.log" etcd --name "$h" --data-dir "$LAB_DIR/$h/etcd" \
		--listen-client-urls "$s://$ip:2379" --advertise-client-urls "$s://$ip:2379" "${tls[@]}" \
		--listen-peer-urls "http://$ip:2380" --initial-advertise-peer-urls "http://$ip:2380" \
		--initial-cluster "${LAB_ETCD_INITIAL:?lab_etcd_cluster first}" \
		--initial-cluster-state new --initial-cluster-token "$LAB_ID" \
		--heartbeat-interval 100 --election-timeout 1000 >/dev/null
	eval "LAB_ETCD_PID_${h//-/_}=$LAB_BG_PID"
}

# lab_etcd_stop HOST: HOST's etcd member dies (SIGKILL: a crash).
lab_etcd_stop() {
	local v="LAB_ETCD_PID_${1//-/_}"
	[[ -n ${!v:-} ]] || _lab_die "lab_etcd_stop: no etcd started on $1"
	lab_kill "${!v}" KILL || true
	eval "$v="
}

# lab_etcd_endpoints HOST...: the client URLs, as a TOML array's inside.
lab_etcd_endpoints() {
	local h out=""
	for h in "$@"; do out+="${out:+, }\"$(_lab_etcd_scheme)://$(lab_ip "$h"):2379\""; done
	echo "$out"
}

# lab_etcdctl HOST ARGS...: etcdctl (v3 API) against HOST's member, from HOST.
lab_etcdctl() {
	local h=${1:?usage: lab_etcdctl HOST ARGS...}
	shift
	local tls=()
	[[ $(_lab_etcd_scheme) == http ]] || tls=(--cacert "$LAB_DIR/etcd-ca/ca.pem"
		--cert "$LAB_DIR/etcd-ca/etcdctl.pem" --key "$LAB_DIR/etcd-ca/etcdctl.key")
	ETCDCTL_API=3 lab_exec "$h" etcdctl --endpoints "$(_lab_etcd_scheme)://$(lab_ip "$h"):2379" \
		"${tls[@]}" --dial-timeout 1s --command-timeout 2s "$@"
}

# lab_etcd_healthy HOST...: every member answers, and a write goes through.
lab_etcd_healthy() {
	local h
	for h in "$@"; do lab_etcdctl "$h" endpoint health >/dev/null 2>&1 || return 1; done
	lab_etcdctl "$1" put /lab/probe ok >/dev/null 2>&1
}

# lab_netem HOST DELAY_MS JITTER_MS LOSS_PCT: what `tc qdisc add dev eth0 root
# netem delay D J loss L` does to HOST's outgoing packets, for kernels
# without sch_netem: iptables (legacy: the nft backend lacks NFQUEUE here)
# drops LOSS_PCT % at random and queues the rest to lab/netdelay, which holds
# each for DELAY +/- JITTER ms. NETDELAY_BIN: the netdelay binary (default
# build/lab/netdelay of this checkout).
lab_netem() {
	local host=${1:?usage: lab_netem HOST DELAY_MS JITTER_MS LOSS_PCT} delay=$2 jitter=$3 loss=$4
	local bin=${NETDELAY_BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/build/lab/netdelay}
	[[ -x $bin ]] || _lab_die "lab_netem: no netdelay at $bin (build it: libnetfilter-queue-dev)"
	lab_bg "$host" "$LAB_DIR/netdelay-$host.log" "$bin" 0 "$delay" "$jitter" >/dev/null
	eval "LAB_NETEM_PID_${host//-/_}=$LAB_BG_PID"
	sleep 0.2
	local p
	p=$(awk -v l="$loss" 'BEGIN { printf "%.4f", l / 100 }')
	lab_exec "$host" iptables-legacy -A OUTPUT -o eth0 -m statistic --mode random 		--probability "$p" -j DROP
	lab_exec "$host" iptables-legacy -A OUTPUT -o eth0 -j NFQUEUE --queue-num 0 --queue-bypass
}

lab_netem_off() {
	local host=${1:?usage: lab_netem_off HOST} v="LAB_NETEM_PID_${1//-/_}"
	lab_exec "$host" iptables-legacy -F OUTPUT
	[[ -z ${!v:-} ]] || lab_kill "${!v}"
}

# lab_postfix_slow_greeting HOST SECONDS|off: HOST's smtpd greets every client
# SECONDS late (what a saturated server looks like from outside: its 220
# comes late), or on time again. Postfix's own `sleep` restriction, run
# before the greeting (smtpd_delay_reject = no); `postfix reload` makes new
# sessions of a running instance take it at once.
lab_postfix_slow_greeting() {
	local host=${1:?usage: lab_postfix_slow_greeting HOST SECONDS|off} secs=${2:?}
	if [[ $secs == off ]]; then
		lab_postconf "$host" -e smtpd_delay_reject=yes "smtpd_client_restrictions="
	else
		lab_postconf "$host" -e smtpd_delay_reject=no "smtpd_client_restrictions=sleep $secs"
	fi
	# A stopped instance (a fenced node) takes the setting at its next start.
	lab_postfix_running "$host" || return 0
	lab_pf "$host" postfix reload >/dev/null 2>&1 || _lab_die "postfix reload failed on $host"
}

# lab_postfix_queued HOST [QUEUES]: number of files in HOST's QUEUES (a
# space-separated list; empty or missing: maildrop incoming active deferred
# hold, the whole queue), counted from the files, hash subdirectories
# included. Cheap enough to poll (a few hundred files: ~1 ms).
lab_postfix_queued() {
	local spool=$LAB_DIR/${1:?usage: lab_postfix_queued HOST [QUEUES]}/spool q
	lab_postfix_conf "$1" >/dev/null
	local -a dirs=()
	for q in ${2:-maildrop incoming active deferred hold}; do dirs+=("$spool/$q"); done
	find "${dirs[@]}" -type f 2>/dev/null | wc -l
}

# lab_postfix_empty HOST: true if HOST's queue holds nothing (for
# lab_wait_for).
lab_postfix_empty() { (($(lab_postfix_queued "${1:?usage: lab_postfix_empty HOST}") == 0)); }

# lab_postfix_settled HOST: true when HOST has delivered what it will: no
# committed message in incoming, active, deferred or maildrop (hold may keep
# some). Only files with the owner-execute bit count: a kill -9 can leave a
# cleanup temporary file (USEC.PID, 0600) that is no message and that
# Postfix itself removes later.
lab_postfix_settled() {
	local spool=$LAB_DIR/${1:?usage: lab_postfix_settled HOST}/spool
	[[ -z $(find "$spool"/{incoming,active,deferred,maildrop} -type f -perm -u=x 2>/dev/null | head -1) ]]
}

#
# Test traffic: Postfix's own smtp-sink and smtp-source.
#

# lab_sink_start HOST PORT DIR [SMTP-SINK OPTIONS...]: start smtp-sink on
# HOST's IP:PORT; each received message becomes one file in DIR
# (YYYYMMDD-HHMMSS.<random>) holding X-Mail-Args:, one X-Rcpt-Args: per
# recipient, smtp-sink's Received: header, then the message.  Waits until it
# listens.  Prints the PID (see lab_kill); log in $LAB_DIR/sink-HOST-PORT.log.
lab_sink_start() {
	local host=${1:?usage: lab_sink_start HOST PORT DIR [OPTIONS...]} port=${2:?} dir=${3:?}
	shift 3
	local ip
	ip=$(lab_ip "$host") || exit 1
	# smtp-sink must drop root (-u); it writes DIR as nobody.
	mkdir -p "$dir"
	chown nobody "$dir"
	lab_bg "$host" "$LAB_DIR/sink-$host-$port.log" \
		smtp-sink -u nobody -d "${dir//%/%%}/%Y%m%d-%H%M%S." "$@" "$ip:$port" 1024 >/dev/null
	local pid=$LAB_BG_PID
	lab_wait_port "$host" "$ip" "$port" ||
		_lab_die "smtp-sink did not start on $host: $(tail -n 3 "$LAB_DIR/sink-$host-$port.log")"
	echo "$pid"
}

# lab_tmpfs DIR SIZE: puts DIR (inside $LAB_DIR) on a filesystem of its own,
# a tmpfs of SIZE (e.g. 128m), keeping what DIR held: a disk that can really
# fill up. Call it before the host's processes start (they must see the
# mount). lab_cleanup unmounts it once every process is gone.
lab_tmpfs() {
	local dir=${1:?usage: lab_tmpfs DIR SIZE} size=${2:?usage: lab_tmpfs DIR SIZE} st tmp
	st=$(_lab_state) || exit 1
	[[ $(cd "$dir" && pwd -P) == "$LAB_DIR"/* ]] || _lab_die "lab_tmpfs: $dir is not inside $LAB_DIR"
	tmp=$(mktemp -d "$LAB_DIR/.tmpfs.XXXXXX")
	cp -a "$dir/." "$tmp/" || _lab_die "lab_tmpfs: cannot copy $dir"
	mount -t tmpfs -o "size=$size,mode=$(stat -c %a "$dir")" "mt-lab-$LAB_ID" "$dir" ||
		_lab_die "lab_tmpfs: mount on $dir failed"
	echo "$dir" >>"$st/mounts"
	cp -a "$tmp/." "$dir/" || _lab_die "lab_tmpfs: cannot copy back into $dir"
	rm -rf "$tmp"
}

# lab_powerfs DIR: puts DIR (inside $LAB_DIR, e.g. a host's directory) on a
# disk that can lose power (lab/powerfs, build/lab/powerfs; POWERFS_BIN
# overrides): a FUSE filesystem in memory that keeps only what fsync and
# directory fsync made durable when lab_powercut cuts its power. DIR's
# contents are kept, and made durable (as if installed and synced). Call it
# before the host's processes start; mounted from the root namespace, so
# every host sees it. lab_cleanup unmounts it (the powerfs process exits).
lab_powerfs() {
	local dir=${1:?usage: lab_powerfs DIR} st tmp bin
	st=$(_lab_state) || exit 1
	bin=${POWERFS_BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/build/lab/powerfs}
	[[ -x $bin ]] || _lab_die "lab_powerfs: no $bin (build it: needs libfuse3-dev)"
	[[ $(cd "$dir" && pwd -P) == "$LAB_DIR"/* ]] || _lab_die "lab_powerfs: $dir is not inside $LAB_DIR"
	tmp=$(mktemp -d "$LAB_DIR/.powerfs.XXXXXX")
	cp -a "$dir/." "$tmp/" || _lab_die "lab_powerfs: cannot copy $dir"
	local mode
	mode=$(stat -c %a "$dir")
	"$bin" "$dir" "$(_lab_powerfs_sock "$dir")" >>"$LAB_DIR/powerfs.log" 2>&1 &
	echo "$dir" >>"$st/mounts"
	lab_wait_for 5 _lab_is_powerfs "$dir" || _lab_die "lab_powerfs: $dir did not mount (see $LAB_DIR/powerfs.log)"
	chmod "$mode" "$dir"
	cp -a "$tmp/." "$dir/" || _lab_die "lab_powerfs: cannot copy back into $dir"
	rm -rf "$tmp"
	lab_powersync "$dir" >/dev/null
}
_lab_is_powerfs() { [[ $(findmnt -n -o FSTYPE --mountpoint "$1" 2>/dev/null) == fuse.powerfs ]]; }
_lab_powerfs_sock() { echo "$LAB_DIR/.powerfs-$(echo "$1" | md5sum | cut -c1-8).sock"; }
_lab_powerfs_ctl() {
	local bin=${POWERFS_BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/build/lab/powerfs}
	"$bin" --ctl "$(_lab_powerfs_sock "$1")" "$2"
}
# lab_powercut DIR: DIR's disk loses power: everything never made durable
# is gone. Kill every process using it first (lab_crash HOST), as a power
# loss would; prints what was dropped.
lab_powercut() { _lab_powerfs_ctl "${1:?usage: lab_powercut DIR}" cut; }
# lab_powersync DIR: makes everything on DIR's disk durable (sync(1) on a real
# disk; the kernel does not pass sync(2) on to a FUSE filesystem).
lab_powersync() { _lab_powerfs_ctl "${1:?usage: lab_powersync DIR}" sync; }

# lab_late_sink_start HOST PORT DIR [DELAY]: like lab_sink_start, but with
# lab/late_sink.py, which stores each message at once and answers its 250
# DELAY seconds (default 1) later: a delivery window a killed client turns
# into a duplicate. Prints the PID; log in $LAB_DIR/sink-HOST-PORT.log.
lab_late_sink_start() {
	local host=${1:?usage: lab_late_sink_start HOST PORT DIR [DELAY]} port=${2:?} dir=${3:?}
	local ip
	ip=$(lab_ip "$host") || exit 1
	mkdir -p "$dir"
	lab_bg "$host" "$LAB_DIR/sink-$host-$port.log" python3 "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/late_sink.py" \
		--listen "$ip:$port" --dir "$dir" --delay "${4:-1}" >/dev/null
	local pid=$LAB_BG_PID
	lab_wait_port "$host" "$ip" "$port" ||
		_lab_die "late_sink did not start on $host: $(tail -n 3 "$LAB_DIR/sink-$host-$port.log")"
	echo "$pid"
}

# _lab_sink_scan count|rcpts DIR: the parser behind lab_sink_messages and
# lab_sink_rcpts.  A dump is complete when it ends with the empty line that
# smtp-sink writes after the final "."; files of transactions in progress (or
# cut by a killed sink) are skipped.  smtp-sink deletes the dump of a
# transaction that was aborted (RSET, lost connection).
_lab_sink_scan() {
	perl -e '
		my ($mode, $dir) = @ARGV;
		opendir(my $dh, $dir) or die "lab: cannot read $dir: $!\n";
		my $n = 0;
		for my $f (sort grep { !/^\./ } readdir $dh) {
			open(my $fh, "<", "$dir/$f") or next;
			my $m = do { local $/; <$fh> };
			next unless defined $m && $m =~ /\n\n\z/;
			$n++;
			next if $mode eq "count";
			my ($head) = split /\n\n/, $m, 2;
			my $id = "-";
			if ($head =~ /^Message-ID:[ \t]*((?:.*)(?:\n[ \t].*)*)/mi) {
				($id = $1) =~ s/\s+//g;
				$id =~ s/^<(.*)>$/$1/;
				$id = "-" if $id eq "";
			}
			while ($head =~ /^X-Rcpt-Args:[ \t]*(\S*)/mg) {
				(my $rcpt = $1) =~ s/^<(.*)>$/$1/;
				print "$id ", ($rcpt eq "" ? "-" : $rcpt), "\n";
			}
		}
		print "$n\n" if $mode eq "count";
	' "$1" "$2"
}

# lab_sink_messages DIR: print the number of complete messages in DIR.
lab_sink_messages() { _lab_sink_scan count "${1:?usage: lab_sink_messages DIR}"; }

# lab_sink_rcpts DIR: print "MESSAGE-ID RECIPIENT" (without <>; "-" if the
# message had no Message-ID) for every envelope recipient of every complete
# message in DIR.  "| sort | uniq -d" shows duplicates.
lab_sink_rcpts() { _lab_sink_scan rcpts "${1:?usage: lab_sink_rcpts DIR}"; }

_lab_sink_at_least() { (($(lab_sink_messages "$1") >= $2)); }

# lab_sink_wait DIR COUNT [TIMEOUT]: wait (default 60 s) until DIR holds at
# least COUNT complete messages.
lab_sink_wait() {
	local dir=${1:?usage: lab_sink_wait DIR COUNT [TIMEOUT]} count=${2:?}
	lab_wait_for "${3:-60}" _lab_sink_at_least "$dir" "$count" ||
		{ _lab_say "$dir: $(lab_sink_messages "$dir") of $count messages"; return 1; }
}

# lab_account LOG SINK_DIR...: compares the messages the client got a 250 for
# (LOG, written by lab/sender.py) with what reached the sinks, by Message-ID.
# Sets TOTAL (accepted), LOST (accepted, never delivered) and DUPS (accepted,
# delivered more than once); leaves $LAB_DIR/{accepted,delivered,lost}.
# Notifications (recipients admin@...) are not counted.
lab_account() {
	local log=$1 d
	shift
	for d in "$@"; do lab_sink_rcpts "$d"; done |
		awk '$2 !~ /^admin@/ {print $1}' | sort >"$LAB_DIR/delivered"
	awk '{gsub(/[<>]/, "", $2); print $2}' "$log" | sort -u >"$LAB_DIR/accepted"
	comm -23 "$LAB_DIR/accepted" <(sort -u "$LAB_DIR/delivered") >"$LAB_DIR/lost"
	TOTAL=$(wc -l <"$LAB_DIR/accepted")
	LOST=$(wc -l <"$LAB_DIR/lost")
	DUPS=$(comm -12 "$LAB_DIR/accepted" <(uniq -d "$LAB_DIR/delivered") | wc -l)
}

# lab_longest_gap LOG FROM [TO]: the longest time (seconds, 3 decimals) in
# which the client of LOG (lab/sender.py --times: the 5th field is the time
# of each 250) got no 250 between FROM and TO (default: now): from FROM to
# the first 250, between two 250s, and from the last one to TO. So an
# intake that stops and never resumes shows as a gap as long as the wait,
# not as 0, and a pause that begins right at FROM is not missed.
lab_longest_gap() {
	local log=${1:?usage: lab_longest_gap LOG FROM [TO]} from=${2:?usage: lab_longest_gap LOG FROM [TO]}
	awk -v t="$from" -v now="${3:-$EPOCHREALTIME}" '$5 >= t && $5 <= now { g = $5 - (p ? p : t); if (g > m) m = g; p = $5 }
		END { g = now - (p ? p : t); if (g > m) m = g; printf "%.3f\n", m }' "$log"
}

# lab_json JSON PATH...: the fields PATH... of the JSON text JSON, one line
# each (lab/json_get.py: PATH is names joined by dots, a number indexes a
# list, "A|B" is the first of A and B that exists; values print as Python
# shows them, True/False; an empty line for a missing path). Fails, printing
# nothing, if JSON is not JSON. One python3 start (~20-30 ms): read every
# field a poll needs in one call.
lab_json() {
	local json=${1-}
	shift
	"$LAB_PY" -S "$_LAB_HERE/json_get.py" "$@" <<<"$json"
}

# lab_source HOST SERVER[:PORT] [SMTP-SOURCE OPTIONS...]: run smtp-source in
# HOST against SERVER (port 25 by default).  Unless the options say otherwise
# (-M), it introduces itself as HOST.lab.test, which also ends its
# Message-IDs: <pid.fd.counter@HOST.lab.test>.
lab_source() {
	local host=${1:?usage: lab_source HOST SERVER[:PORT] [OPTIONS...]} server=${2:?}
	shift 2
	[[ $server == *:* ]] || server=$server:25
	local -a opt=("$@")
	[[ " $* " == *" -M "* ]] || opt=(-M "$host.lab.test" "$@")
	lab_exec "$host" smtp-source "${opt[@]}" "$server"
}

#
# Mail by MX: the lab's DNS server (dnsmasq) and a sending Postfix that finds
# its next hop by MX records, as mail from the Internet does.
#

# lab_dns_start HOST DOMAINS MXHOST:PREF...: dnsmasq on HOST's IP:53 (UDP
# and TCP), the lab's DNS server. It knows only what it is told: an A record
# NAME.lab.test for every host of the lab made so far, and for each of the
# comma-separated DOMAINS one MX record per MXHOST:PREF (to
# MXHOST.lab.test). NAME=IPV4:PREF is an MX to NAME.lab.test, an A record
# of IPV4 made for it (an address that is no host's own: a [vip]). Other
# names under lab.test do not exist (--local=/lab.test/); no system
# configuration is read
# (--conf-file=/dev/null, --no-resolv, --no-hosts) and nothing is
# forwarded. Queries are logged to $LAB_DIR/dns-HOST.log. Waits until it
# answers; prints the PID.
lab_dns_start() {
	local host=${1:?usage: lab_dns_start HOST DOMAINS MXHOST:PREF...} domains=${2:?usage: lab_dns_start HOST DOMAINS MXHOST:PREF...}
	shift 2
	local ip st name addr d mx
	ip=$(lab_ip "$host") || exit 1
	st=$(_lab_state) || exit 1
	command -v dnsmasq >/dev/null || _lab_die "missing command: dnsmasq (package dnsmasq-base)"
	# dnsmasq drops root for nobody: the files it writes are its own.
	install -m 644 -o nobody /dev/null "$LAB_DIR/dns-$host.log"
	local -a opt=(--keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --no-poll
		--user=nobody --group=nogroup --pid-file="$LAB_DIR/dns-$host.pid"
		--listen-address="$ip" --bind-interfaces --port=53 --local=/lab.test/
		--log-queries --log-facility="$LAB_DIR/dns-$host.log")
	while read -r name addr; do opt+=(--host-record="$name.lab.test,$addr"); done <"$st/hosts"
	for mx in "$@"; do
		if [[ $mx =~ ^([a-z][a-z0-9-]*)=([0-9.]+):[0-9]+$ ]]; then
			opt+=(--host-record="${BASH_REMATCH[1]}.lab.test,${BASH_REMATCH[2]}")
		elif [[ $mx =~ ^[a-z][a-z0-9-]*:[0-9]+$ ]]; then
			lab_ip "${mx%%:*}" >/dev/null
		else
			_lab_die "lab_dns_start: not MXHOST:PREF or NAME=IPV4:PREF: $mx"
		fi
	done
	for d in ${domains//,/ }; do
		for mx in "$@"; do
			mx=${mx/=*:/:}  # NAME=IPV4:PREF -> NAME:PREF
			opt+=(--mx-host="$d,${mx%%:*}.lab.test,${mx#*:}")
		done
	done
	lab_bg "$host" "$LAB_DIR/dns-$host.out" dnsmasq "${opt[@]}" >/dev/null
	local pid=$LAB_BG_PID
	lab_wait_port "$host" "$ip" 53 ||
		_lab_die "dnsmasq did not start on $host: $(tail -n 3 "$LAB_DIR/dns-$host.out")"
	echo "$pid"
}

# lab_resolver HOST DNSHOST: the programs started in HOST from now on (by
# lab_exec, lab_bg, lab_pf...) resolve names with DNSHOST's server:
# /etc/netns/$LAB_ID-HOST/resolv.conf, which "ip netns exec" bind-mounts on
# /etc/resolv.conf. Cleanup removes it (and /etc/netns once it is empty).
lab_resolver() {
	local host=${1:?usage: lab_resolver HOST DNSHOST} dns=${2:?usage: lab_resolver HOST DNSHOST}
	local ns ip st
	ns=$(lab_ns "$host") || exit 1
	ip=$(lab_ip "$dns") || exit 1
	st=$(_lab_state) || exit 1
	echo "$ns" >>"$st/resolv"
	# Twice: another lab's cleanup may remove an empty /etc/netns meanwhile.
	mkdir -p "/etc/netns/$ns" 2>/dev/null || mkdir -p "/etc/netns/$ns" ||
		_lab_die "cannot create /etc/netns/$ns"
	printf 'nameserver %s\noptions timeout:1 attempts:2\n' "$ip" >"/etc/netns/$ns/resolv.conf"
}

# lab_mx_sender_create HOST DNSHOST [KEY=VALUE...]: a Postfix instance for
# HOST (lab_postfix_create HOST KEY=VALUE...) that sends all its mail by MX,
# like a mail server on the Internet: no relayhost, DNSHOST as its resolver
# (lab_resolver), DNS lookups on (smtp_host_lookup = dns, and
# smtp_dns_support_level back to its default instead of the lab's
# "disabled"). Its retry settings are Postfix's defaults (queue_run_delay
# and minimal_backoff_time 300 s, maximal_backoff_time 4000 s) unless
# KEY=VALUE say otherwise, e.g. for a test that must end quickly:
# minimal_backoff_time=2s maximal_backoff_time=4s queue_run_delay=2s.
lab_mx_sender_create() {
	local host=${1:?usage: lab_mx_sender_create HOST DNSHOST [KEY=VALUE...]} dns=${2:?usage: lab_mx_sender_create HOST DNSHOST [KEY=VALUE...]}
	shift 2
	lab_resolver "$host" "$dns"
	lab_postfix_create "$host" "smtp_dns_support_level =" "smtp_host_lookup = dns" \
		"disable_dns_lookups = no" "$@"
}

# lab_mx_relayed SENDER: how many messages SENDER's Postfix delivered
# through each MX host, from its maillog (relay=MX.lab.test[...] with
# status=sent): "via_main=N via_backup=N" (only the hosts it used).
lab_mx_relayed() {
	awk '/ status=sent / && match($0, / relay=[a-z0-9-]+\.lab\.test\[/) {
			mx = substr($0, RSTART + 7, RLENGTH - 8); sub(/\.lab\.test$/, "", mx); via[mx]++
		}
		END { for (mx in via) printf "%svia_%s=%d", (n++ ? " " : ""), mx, via[mx]; printf "\n" }' \
		"$LAB_DIR/${1:?usage: lab_mx_relayed SENDER}/maillog" | tr ' ' '\n' | sort | paste -sd' '
}

# lab_mx_account LOG SENDER SINK_DIR...: the accounting of mail sent by MX.
# LOG is lab/sender.py's log of the messages SENDER's Postfix answered 250;
# the sinks say what arrived (lab_account), SENDER's maillog how it was
# delivered. Prints one line:
#   sent=N delivered=N lost=N duplicated=N refused_both=N sender_deferred=N may_dup=N via_MX=N...
#   sent             messages SENDER accepted (LOG)
#   delivered        of those, found at a sink (by Message-ID)
#   lost             never found at a sink
#   duplicated       found more than once
#   refused_both     delivery attempts in which every MX host refused the
#                    connection (status=deferred, relay=none, "Connection refused")
#   sender_deferred  messages SENDER deferred at least once, for any reason
#                    (every MX refused, "delivery temporarily suspended",
#                    a lost connection, a 4xx reply)
#   may_dup          "message may be sent more than once" lines: SENDER lost
#                    a connection after the end of a message's data
#   via_MX           lab_mx_relayed: messages delivered through MX host MX
# Also sets MX_ACCOUNT (that line), TOTAL LOST DUPS (lab_account) and
# MX_REFUSED_BOTH MX_DEFERRED MX_MAY_DUP: call it outside $(...).
lab_mx_account() {
	local log=${1:?usage: lab_mx_account LOG SENDER SINK_DIR...} sender=${2:?usage: lab_mx_account LOG SENDER SINK_DIR...}
	shift 2
	lab_account "$log" "$@"
	read -r MX_REFUSED_BOTH MX_DEFERRED MX_MAY_DUP < <(awk '
		/ status=deferred / { deferred[$6] = 1 }
		/ relay=none, .* status=deferred .*Connection refused/ { refused++ }
		/message may be sent more than once/ { maydup++ }
		END { n = 0; for (q in deferred) n++; printf "%d %d %d\n", refused, n, maydup }' \
		"$LAB_DIR/$sender/maillog")
	local via
	via=$(lab_mx_relayed "$sender")
	MX_ACCOUNT="sent=$TOTAL delivered=$(comm -12 "$LAB_DIR/accepted" <(sort -u "$LAB_DIR/delivered") | wc -l)"
	MX_ACCOUNT+=" lost=$LOST duplicated=$DUPS refused_both=$MX_REFUSED_BOTH sender_deferred=$MX_DEFERRED"
	MX_ACCOUNT+=" may_dup=$MX_MAY_DUP${via:+ $via}"
	echo "$MX_ACCOUNT"
}

#
# Cleanup.
#

# lab_cleanup: stop and remove everything the lab made, in this order:
# lab_bg processes (TERM, 3 s, KILL), Postfix instances (stop, then KILL),
# anything else still running inside the lab's namespaces (KILL), the
# namespaces (with them the bridge and veths), LAB_DIR (kept if LAB_KEEP=1),
# and the bookkeeping.  Idempotent; never fails.
lab_cleanup() {
	local -
	set +e +u
	[[ -n ${LAB_ID:-} && -z ${_LAB_CLEANED:-} ]] || return 0
	local st=$_LAB_RUN/$LAB_ID
	[[ -d $st ]] || { _LAB_CLEANED=1; return 0; }
	local proc rest host ns p

	# Silenced hosts die for good first: their frozen processes would sit
	# out every TERM below. Reaped here with stderr off, as lab_crash does:
	# bash would print "Killed" for each of its own background jobs.
	{
		while read -r host; do
			[[ -n $host ]] && (lab_crash "$host")
		done < <(cat "$st/silenced" 2>/dev/null)
		while read -r proc rest; do
			_lab_alive "$proc" || _lab_reap "${proc%%:*}"
		done < <(cat "$st/pids" 2>/dev/null)
	} 2>/dev/null

	while read -r proc rest; do
		_lab_stop_proc "$proc"
	done < <(tac "$st/pids" 2>/dev/null)

	while read -r host; do
		[[ -n $host ]] && (lab_postfix_stop "$host")
	done <"$st/postfix"

	for ns in $(tac "$st/netns"); do
		local -a left=()
		for p in $(ip netns pids "$ns" 2>/dev/null); do
			[[ $p == "$$" || $p == "$BASHPID" ]] && continue
			proc=$(_lab_proc "$p") || continue
			_lab_say "killing $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-60) (pid $p, left in $ns)"
			left+=("$proc")
		done
		if ((${#left[@]})); then
			_lab_signal KILL "${left[@]}"
			_lab_wait_dead 3 "${left[@]}"
			for proc in "${left[@]}"; do _lab_reap "${proc%%:*}" 2>/dev/null; done
		fi
		ip netns del "$ns" 2>/dev/null
	done

	for ns in $(sort -u "$st/resolv" 2>/dev/null); do
		rm -rf "/etc/netns/$ns"
	done
	[[ ! -s $st/resolv ]] || rmdir /etc/netns 2>/dev/null

	local m
	for m in $(tac "$st/mounts" 2>/dev/null); do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || _lab_say "cannot unmount $m"
	done

	local dir
	dir=$(cat "$st/dir" 2>/dev/null)
	if [[ -n $dir && -d $dir ]]; then
		if [[ ${LAB_KEEP:-} == 1 ]]; then
			_lab_say "kept $dir"
		elif [[ -f $st/made_dir ]]; then
			rm -rf --one-file-system "$dir"
		else
			find "$dir" -mindepth 1 -delete
		fi
	fi
	rm -rf "$st"
	_LAB_CLEANED=1
	return 0
}

#
# As a program: lab.sh list | gc
#

# lab_list: one line per lab: id, owner state, directory, namespaces.
lab_list() {
	local st id owner dir state
	for st in "$_LAB_RUN"/mt*; do
		[[ -d $st ]] || continue
		id=${st##*/}
		owner=$(cat "$st/owner" 2>/dev/null)
		dir=$(cat "$st/dir" 2>/dev/null)
		state=dead
		[[ -n $owner ]] && _lab_alive "$owner" && state=live
		echo "$id owner=${owner%%:*}($state) dir=${dir:--} netns=$(tr '\n' ' ' <"$st/netns" 2>/dev/null)"
	done
}

# lab_gc: clean up every lab whose owning shell is gone.
lab_gc() {
	local st owner
	for st in "$_LAB_RUN"/mt*; do
		[[ -d $st ]] || continue
		owner=$(cat "$st/owner" 2>/dev/null)
		if [[ -n $owner ]]; then
			_lab_alive "$owner" && continue
		else
			# No owner yet: a lab_init in progress, unless it is old.
			[[ -n $(find "$st" -maxdepth 0 -mmin +1) ]] || continue
		fi
		_lab_gc_one "${st##*/}" "$(cat "$st/dir" 2>/dev/null)"
	done
}

# _lab_gc_one ID DIR: lab_cleanup for another shell's lab.
_lab_gc_one() {
	local LAB_ID=$1 LAB_DIR=$2 _LAB_CLEANED=
	_lab_say "removing lab $LAB_ID (${LAB_DIR:-no dir})"
	lab_cleanup
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	set -euo pipefail
	case ${1:-} in
	list) lab_list ;;
	gc) lab_gc ;;
	*)
		echo "usage: $0 list|gc   (or source it: see docs/lab.md)" >&2
		exit 2
		;;
	esac
fi
