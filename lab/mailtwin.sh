# shellcheck shell=bash
#
# mailtwin.sh: mailtwin nodes in the lab. Source it after lab.sh.
#
#   mt_pki HOST...                  make the lab's CA ($LAB_DIR/pki) and one
#                                   certificate per HOST
#   mt_ca DIR NAME                  a CA of its own: DIR/ca.pem, DIR/ca.key
#   mt_cert CA_DIR NAME [OUT]       a certificate for NAME (CN and DNS name) from
#                                   the CA in CA_DIR: OUT.pem, OUT.key (0600);
#                                   OUT defaults to CA_DIR/NAME
#   mt_config HOST ROLE PEER        write $LAB_DIR/HOST/mailtwin.toml (and, with
#                                   the relay on, mt_relay HOST); knobs:
#                                   MT_DURABILITY (sync), MT_FAILOVER (auto|manual),
#                                   MT_MANAGE (true: mailtwind starts/stops Postfix),
#                                   MT_CHECK_INTERVAL, MT_FAIL_THRESHOLD,
#                                   MT_PROBE_TIMEOUT, MT_PREFERRED, MT_FAILBACK,
#                                   MT_FAILBACK_DELAY, MT_HOOK, MT_MAIL_TO,
#                                   MT_METRICS_PORT (Prometheus on the host's IP),
#                                   MT_VIP (ADDR/PREFIX: [vip] on eth0),
#                                   MT_WITNESS (lab_etcd_endpoints ...: [witness],
#                                   with MT_WITNESS_TTL, default 4s; with
#                                   LAB_ETCD_TLS=1 also ca_file, and this
#                                   node's client certificate of the lab's
#                                   etcd CA),
#                                   MT_RELAY (off, the default as in the product:
#                                   Postfix listens on port 25 itself; on:
#                                   mailtwind's relay owns it, [relay])
#   mt_relay HOST                   leave HOST's port 25 to its mailtwind's relay
#                                   (postfix-config --relay-only --apply)
#   mt_public_service HOST          the master.cf inet service that takes HOST's
#                                   public mail: smtp, or the relay's smtpd
#   mt_gate HOST                    route HOST's Postfix through the gate
#   mt_set_durability HOST MODE     async | sync | strict, for the next start
#   mt_start [--timeout T] HOST [ARGS...]  start mailtwind in HOST (background,
#                                   logged to $LAB_DIR/HOST/mailtwind.log), wait up
#                                   to T s (default 10) for its control socket (a
#                                   primary scans its whole queue first); prints its PID
#   mt_stop HOST                    stop it (SIGTERM), mt_kill HOST (SIGKILL)
#   mt HOST ARGS...                 run the mailtwin CLI for HOST's node
#   mt_json HOST                    `mailtwin status --json`, one line (nothing, and
#                                   success, if the daemon does not answer)
#   mt_json HOST PATH...            fields of it, one line each (lab_json: dotted
#                                   paths, e.g. ha.epoch_confirmed, gate.refused;
#                                   True/False); fails if the daemon does not answer
#   mt_status HOST KEY              one field of `mailtwin status --json`
#                                   (replication.KEY, or KEY at the top)
#   mt_wait_state HOST STATE [T]    wait until HOST's link is in STATE
#   mt_wait_synced MAIN BACKUP [T]  wait until BACKUP's mirror equals MAIN's queue
#   mt_ha HOST KEY                  one field of status.ha
#   mt_witness HOST KEY             one field of status.witness
#   mt_role_is HOST ROLE EPOCH      true if HOST is ROLE at EPOCH
#   mt_handover_done HOST           nothing set aside waits for handover on HOST
#   mt_queue_digest DIR             one line per queue file and log under a Postfix
#                                   queue or a mirror: "QUEUE ID MODE MTIME SHA256"
#                                   (hash subdirectories flattened; files without
#                                   the owner-execute bit, still being written, skipped)
#
# MAILTWIN_BIN is the directory holding mailtwind and mailtwin (default:
# build/apps of this checkout).

MAILTWIN_BIN=${MAILTWIN_BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/build/apps}
MT_PORT=${MT_PORT:-7525}

mt_pki() {
	local pki=$LAB_DIR/pki host
	mt_ca "$pki" "mailtwin lab CA $LAB_ID" || return 1
	for host in "$@"; do
		mt_cert "$pki" "$host" || return 1
	done
}

# mt_ca DIR NAME: a new certificate authority in DIR: DIR/ca.pem (subject
# CN=NAME) and DIR/ca.key; EC P-256, valid 2 days. With mt_cert, the one
# maker of the lab's certificates (mt_pki; t-04's rogue node and foreign
# CA; tests/package's standby).
mt_ca() {
	local dir=${1:?usage: mt_ca DIR NAME} name=${2:?usage: mt_ca DIR NAME}
	mkdir -p "$dir"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj "/CN=$name" -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null ||
		{ echo "mt_ca: openssl failed" >&2; return 1; }
}

# mt_cert CA_DIR NAME [OUT]: a certificate for NAME (CN=NAME, DNS:NAME),
# signed by the CA in CA_DIR (mt_ca): OUT.pem and OUT.key (mode 0600); OUT
# defaults to CA_DIR/NAME.
mt_cert() {
	local ca=${1:?usage: mt_cert CA_DIR NAME [OUT]} name=${2:?usage: mt_cert CA_DIR NAME [OUT]}
	local out=${3:-$1/$2}
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" \
		-keyout "$out.key" -out "$out.csr" 2>/dev/null &&
		openssl x509 -req -in "$out.csr" -CA "$ca/ca.pem" -CAkey "$ca/ca.key" \
			-CAcreateserial -days 2 -extfile <(printf 'subjectAltName=DNS:%s\n' "$name") \
			-out "$out.pem" 2>/dev/null ||
		{ echo "mt_cert: cannot make the certificate of $name" >&2; return 1; }
	rm -f "$out.csr"
	chmod 600 "$out.key"
}

mt_config() {
	local host=$1 role=$2 peer=$3
	shift 3
	local dir=$LAB_DIR/$host/mailtwin
	mkdir -p "$dir"
	cat >"$LAB_DIR/$host/mailtwin.toml" <<-EOT
		[node]
		name = "$host"
		cluster = "${MT_CLUSTER:-lab}"
		role = "$role"
		state_dir = "$dir/state"
		mirror_dir = "$LAB_DIR/$host/mirror"
		control_socket = "$dir/control.sock"

		[postfix]
		config_dir = "$(lab_postfix_conf "$host")"
		manage = ${MT_MANAGE:-true}

		[replication]
		listen = "$(lab_ip "$host"):$MT_PORT"
		peer = "$(lab_ip "$peer"):$MT_PORT"
		heartbeat_interval = "${MT_HEARTBEAT:-200ms}"
		peer_timeout = "${MT_PEER_TIMEOUT:-2s}"

		[tls]
		ca_file = "$LAB_DIR/pki/ca.pem"
		cert_file = "$LAB_DIR/pki/$host.pem"
		key_file = "$LAB_DIR/pki/$host.key"
		peer_name = "$peer"

		[gate]
		durability = "${MT_DURABILITY:-sync}"
		sync_timeout = "${MT_SYNC_TIMEOUT:-1s}"

		[failover]
		mode = "${MT_FAILOVER:-auto}"
		check_interval = "${MT_CHECK_INTERVAL:-250ms}"
		fail_threshold = ${MT_FAIL_THRESHOLD:-3}
		probe_timeout = "${MT_PROBE_TIMEOUT:-500ms}"
		preferred = "${MT_PREFERRED:-}"
		failback = "${MT_FAILBACK:-manual}"
		failback_delay = "${MT_FAILBACK_DELAY:-60s}"

		[notify]
		hook = "${MT_HOOK:-}"
		mail_to = "${MT_MAIL_TO:-}"
	EOT
	if [[ -n ${MT_VIP:-} ]]; then  # ADDR/PREFIX on the lab network, e.g. $LAB_NET.100/24
		printf '\n[vip]\naddress = "%s"\ninterface = "eth0"\n' "$MT_VIP" \
			>>"$LAB_DIR/$host/mailtwin.toml"
	fi
	if [[ ${MT_RELAY:-off} == on ]]; then  # docs/failover.md, "Who owns port 25"
		printf '\n[relay]\nlisten = "0.0.0.0:25"\nhold_timeout = "%s"\n' "${MT_RELAY_HOLD:-30s}" \
			>>"$LAB_DIR/$host/mailtwin.toml"
	fi
	if [[ -n ${MT_WITNESS:-} ]]; then  # lab_etcd_endpoints ...: [witness] (docs/failover.md)
		printf '\n[witness]\nendpoints = [%s]\nttl = "%s"\n' "$MT_WITNESS" "${MT_WITNESS_TTL:-4s}" \
			>>"$LAB_DIR/$host/mailtwin.toml"
		if [[ ${LAB_ETCD_TLS:-0} == 1 ]]; then  # the lab's etcd CA (lab_etcd_cluster)
			lab_etcd_client_cert "$host"
			printf 'ca_file = "%s"\ncert_file = "%s"\nkey_file = "%s"\n' "$LAB_DIR/etcd-ca/ca.pem" \
				"$LAB_DIR/etcd-ca/$host.pem" "$LAB_DIR/etcd-ca/$host.key" >>"$LAB_DIR/$host/mailtwin.toml"
		fi
	fi
	if [[ -n ${MT_METRICS_PORT:-} ]]; then
		printf '\n[metrics]\nlisten = "%s:%s"\n' "$(lab_ip "$host")" "$MT_METRICS_PORT" \
			>>"$LAB_DIR/$host/mailtwin.toml"
	fi
	# Empty notify keys mean "off": drop them (an empty hook is not a path).
	sed -i '/^hook = ""$/d; /^mail_to = ""$/d; /^preferred = ""$/d' "$LAB_DIR/$host/mailtwin.toml"
	# Port 25 is mailtwind's: the host's Postfix moves behind the relay.
	if [[ -f $LAB_DIR/$host/etc/main.cf ]]; then mt_relay "$host"; fi
}

# mt_relay HOST: HOST's Postfix leaves port 25 to the relay of its mailtwind
# and listens on loopback with the PROXY protocol instead (postfix-config
# --relay-only --apply); nothing when HOST's config has no [relay].
mt_relay() {
	grep -q '^\[relay\]' "$LAB_DIR/$1/mailtwin.toml" || return 0
	mt "$1" postfix-config --relay-only --apply >/dev/null ||
		{ echo "mt_relay: postfix-config --relay-only failed on $1" >&2; return 1; }
	if lab_postfix_running "$1"; then lab_pf "$1" postfix reload >/dev/null; fi
}

# mt_public_service HOST: the master.cf inet service name of HOST's public
# smtpd: "smtp" (port 25), or with the relay on, its smtpd ([relay] smtpd,
# default 127.0.0.1:10024).
mt_public_service() {
	if grep -q '^\[relay\]' "$LAB_DIR/$1/mailtwin.toml"; then echo 127.0.0.1:10024; else echo smtp; fi
}

# mt_gate HOST: route HOST's Postfix mail through its mailtwind's gate
# (mailtwin postfix-config --apply), so the 250 waits for the standby.
mt_gate() {
	mt "$1" postfix-config --apply >/dev/null || { echo "mt_gate: postfix-config failed on $1" >&2; return 1; }
	if lab_postfix_running "$1"; then lab_pf "$1" postfix reload >/dev/null; fi
}

# mt_set_durability HOST MODE: change [gate] durability in HOST's config
# (takes effect at mailtwind's next start).
mt_set_durability() {
	sed -i "s/^durability = .*/durability = \"$2\"/" "$LAB_DIR/$1/mailtwin.toml"
}

mt_start() {
	local timeout=10
	if [[ ${1:-} == --timeout ]]; then
		timeout=${2:?usage: mt_start [--timeout SECONDS] HOST [ARGS...]}
		shift 2
	fi
	local host=${1:?usage: mt_start [--timeout SECONDS] HOST [ARGS...]}
	shift
	rm -f "$LAB_DIR/$host/mailtwin/control.sock"  # left by a crash
	lab_bg "$host" "$LAB_DIR/$host/mailtwind.log" \
		"$MAILTWIN_BIN/mailtwind" --config "$LAB_DIR/$host/mailtwin.toml" "$@" >/dev/null
	eval "MT_PID_${host//-/_}=$LAB_BG_PID"
	lab_wait_for "$timeout" test -S "$LAB_DIR/$host/mailtwin/control.sock" || {
		echo "mt_start: mailtwind on $host did not open its control socket in $timeout s; its log:" >&2
		tail -20 "$LAB_DIR/$host/mailtwind.log" >&2
		return 1
	}
	echo "$LAB_BG_PID"
}

_mt_pid() { local v="MT_PID_${1//-/_}"; echo "${!v:-}"; }

mt_stop() {
	local pid
	pid=$(_mt_pid "$1")
	[[ -n $pid ]] && { lab_kill "$pid" || true; }
	rm -f "$LAB_DIR/$1/mailtwin/control.sock"
}

mt_kill() {
	local pid
	pid=$(_mt_pid "$1")
	[[ -n $pid ]] && { lab_kill "$pid" KILL || true; }
	rm -f "$LAB_DIR/$1/mailtwin/control.sock"
}

mt() {
	local host=$1
	shift
	lab_exec "$host" "$MAILTWIN_BIN/mailtwin" --config "$LAB_DIR/$host/mailtwin.toml" "$@"
}

# mt_json HOST [PATH...]: without PATH, HOST's `mailtwin status --json`
# (one line; nothing, and success, when the daemon does not answer: a
# snapshot for a report). With PATHs, those fields of it, one line each
# (lab_json: "ha.epoch_confirmed", "gate.refused", "nodes.1.role";
# True/False; an empty line for a missing field); fails when the daemon
# does not answer. One mailtwin and one python3 (~30 ms in all): a poll
# reads every field it needs in one call.
mt_json() {
	local sock=$LAB_DIR/${1:?usage: mt_json HOST [PATH...]}/mailtwin/control.sock json
	shift
	json=$([[ -S $sock ]] && "$MAILTWIN_BIN/mailtwin" --socket "$sock" status --json 2>/dev/null) || true
	if (($# == 0)); then
		[[ -z $json ]] || echo "$json"
		return 0
	fi
	[[ -n $json ]] && lab_json "$json" "$@"
}

# mt_status HOST KEY: one field of HOST's status: replication.KEY, or KEY at
# the top (role, epoch, node...). As Python prints it (True/False).
mt_status() { mt_json "$1" "replication.${2:?usage: mt_status HOST KEY}|$2"; }

# mt_ha HOST KEY: one field of the "ha" section of `mailtwin status --json`.
mt_ha() { mt_json "$1" "ha.${2:?usage: mt_ha HOST KEY}"; }

# mt_witness HOST KEY: one field of the "witness" section of `mailtwin status --json`.
mt_witness() {
	"$MAILTWIN_BIN/mailtwin" --socket "$LAB_DIR/$1/mailtwin/control.sock" status --json 2>/dev/null |
		python3 -c 'import json, sys; print(json.load(sys.stdin).get("witness", {}).get(sys.argv[1], ""))' "$2"
}

# mt_role_is HOST ROLE EPOCH: true if HOST has that role at that epoch.
mt_role_is() { [[ $(mt_status "$1" role) == "$2" && $(mt_status "$1" epoch) == "$3" ]]; }

# mt_handover_done HOST: HOST holds no set-aside message waiting for handover.
mt_handover_done() { [[ $(mt_ha "$1" handover_pending) == 0 ]]; }

_mt_state_is() { [[ $(mt_status "$1" state) == "$2" ]]; }
mt_wait_state() { lab_wait_for "${3:-20}" _mt_state_is "$1" "$2"; }

mt_queue_digest() { python3 "$(dirname "${BASH_SOURCE[0]}")/queue_digest.py" "$1"; }

mt_wait_synced() {
	local main=$1 backup=$2 timeout=${3:-30} i a b
	for ((i = 0; i < timeout * 4; i++)); do
		a=$(mt_queue_digest "$LAB_DIR/$main/spool")
		b=$(mt_queue_digest "$LAB_DIR/$backup/mirror")
		[[ "$a" == "$b" ]] && return 0
		sleep 0.25
	done
	echo "mt_wait_synced: $backup's mirror still differs from $main's queue:" >&2
	diff <(echo "$a") <(echo "$b") | head -20 >&2
	return 1
}
