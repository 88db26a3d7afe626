#!/bin/bash
#
# package: the Debian package as installed on a clean Debian 12 that has
# never seen this tree.
#   1. debootstrap a Debian 12 root from the archive (cached as a tarball in
#      $MAILTWIN_TEST_CACHE, default /var/cache/mailtwin-test; built from
#      scratch when missing), unpack a fresh copy;
#   2. install the .deb (scripts/package, or $MAILTWIN_DEB) with apt, which
#      brings its dependencies (Postfix) from the archive;
#   3. systemd-analyze verify the units; the postfix@.service drop-in is in place;
#   4. run the unit's ExecStart on the installed example configuration: it
#      refuses the placeholders (exit 78, which the unit does not restart);
#   5. configure a standby (certificates, Postfix with long queue IDs, its
#      directories as the unit creates them), run ExecStart again in a
#      private network namespace: it follows as standby (`mailtwin status`,
#      /metrics), and stops cleanly on SIGTERM;
#   6. an old primary boots after a failover (issue 16, item 4): its state
#      says primary, a message waits in its queue for local delivery, and
#      Debian's postfix.service is enabled. The root boots with systemd as
#      PID 1 (systemd-nspawn, private network, no peer): Debian's unit skips
#      Postfix (the package's drop-in), mailtwind runs under its unit,
#      waits for its peer, and nothing is delivered;
#   7. `mailtwin promote --force` there: mailtwind starts Postfix inside its
#      unit's sandbox, and Postfix delivers the message to the mailbox.
# Needs root and the Debian archive (deb.debian.org). Never starts a
# service: a policy-rc.d forbids it, and the root has no systemd running.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cache=${MAILTWIN_TEST_CACHE:-/var/cache/mailtwin-test}
archive=${MAILTWIN_DEBIAN_MIRROR:-http://deb.debian.org/debian}

fail() {
	echo "FAIL: $*"
	exit 1
}
((EUID == 0)) || fail "the package test needs root (debootstrap, chroot)"

deb=${MAILTWIN_DEB:-}
if [[ -z $deb ]]; then
	deb=$("$REPO/scripts/package" --incremental | tail -1) || fail "scripts/package failed"
fi
[[ -f $deb ]] || fail "no package at '$deb'"
echo "0. package $(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version) ($deb)"

# 1. The clean root.
base=$cache/bookworm-minbase.tar
mkdir -p "$cache/apt-archives/partial"
if [[ ! -f $base ]]; then
	echo "1. debootstrap bookworm from $archive into the cache (once per machine)"
	tmp=$(mktemp -d /var/tmp/mailtwin-debootstrap.XXXXXX)
	debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus bookworm "$tmp" "$archive" \
		>"$cache/debootstrap.log" 2>&1 || { rm -rf --one-file-system "$tmp"; fail "debootstrap failed: $cache/debootstrap.log"; }
	tar -C "$tmp" -cf "$base.tmp" . && mv "$base.tmp" "$base"
	rm -rf --one-file-system "$tmp"
fi
root=$(mktemp -d /var/tmp/mailtwin-package-test.XXXXXX)
# The booted container: $boot is script(1), which runs systemd-nspawn
# through the shell of $SHELL (dash, where CI leaves SHELL unset, forks
# first): systemd-nspawn is found by its command line, which names $root;
# its child is the container's PID 1 (systemd).
child_of() { { ps -o pid= --ppid "$1" 2>/dev/null | tr -d ' ' | head -1; } || true; }
nspawn_pid() { { pgrep -f -x "systemd-nspawn -D $root .*" | head -1; } || true; }
ct_leader() {
	local n
	n=$(nspawn_pid)
	[[ -n $n ]] || return 1
	n=$(child_of "$n")
	[[ -n $n ]] || return 1
	echo "$n"
}
# in_ct CMD...: run CMD in the booted container.
in_ct() {
	local leader
	leader=$(ct_leader) || return 1
	nsenter -t "$leader" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"
}
# container_poweroff: SIGTERM to systemd-nspawn halts the container.
container_poweroff() {
	local n i
	n=$(nspawn_pid)
	if [[ -n $n ]]; then
		kill -TERM "$n" 2>/dev/null || true
		for ((i = 0; i < 300; i++)); do kill -0 "$n" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$n" 2>/dev/null || true
	fi
	kill "$boot" 2>/dev/null || true
	wait "$boot" 2>/dev/null || true
	rmdir "/run/systemd/nspawn/propagate/${root##*/}" 2>/dev/null || true
}
pid= boot=
cleanup() {
	if [[ -n $pid ]]; then
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	if [[ -n $boot ]]; then container_poweroff; fi
	for m in var/cache/apt/archives dev/pts dev proc; do
			if mountpoint -q "$root/$m"; then umount "$root/$m" || true; fi
	done
	# Nothing may be mounted under the root any more: only then remove it.
	if ! grep -q "^$root/" <<<"$(findmnt -rn -o TARGET)"; then
		rm -rf --one-file-system "$root" "$root.console"
	else
		echo "package test: $root still has mounts; not removed" >&2
	fi
}
trap cleanup EXIT
tar -C "$root" -xf "$base"
chmod 755 "$root"  # its "/" (the tarball has debootstrap's 0700): Postfix runs as its own user
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts"
mount --bind "$cache/apt-archives" "$root/var/cache/apt/archives"
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
echo "1. clean Debian $(cat "$root/etc/debian_version") root in $root"

# 2. apt installs the package and what it depends on.
cp "$deb" "$root/tmp/"
echo "postfix postfix/main_mailer_type select No configuration" | in_root debconf-set-selections
in_root apt-get update -qq >"$root/tmp/apt.log" 2>&1 || fail "apt-get update in the root: $(tail -5 "$root/tmp/apt.log")"
in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	"/tmp/${deb##*/}" >>"$root/tmp/apt.log" 2>&1 || fail "apt-get install: $(tail -15 "$root/tmp/apt.log")"
in_root dpkg-query -W -f='${Status}' mailtwin | grep -q "install ok installed" || fail "mailtwin not installed"
ver=$(in_root dpkg-query -W -f='${Version}' mailtwin)
echo "2. apt installed mailtwin $ver with $(grep -c '^Setting up' "$root/tmp/apt.log") packages (postfix $(in_root dpkg-query -W -f='${Version}' postfix))"
[[ $(in_root mailtwind --version) == "mailtwind $ver" ]] || fail "mailtwind --version says '$(in_root mailtwind --version)', the package is $ver"
[[ $(in_root mailtwin --version) == "mailtwin $ver" ]] || fail "mailtwin --version says '$(in_root mailtwin --version)'"
for m in mailtwind.8 mailtwin.8 mailtwin.toml.5; do
	[[ -f $root/usr/share/man/man${m##*.}/$m.gz ]] || fail "man page $m missing"
done
python3 -m json.tool "$root/usr/share/mailtwin/monitoring/grafana-dashboard.json" >/dev/null ||
	fail "the Grafana dashboard is missing or not JSON"

# 3. The units (their man pages are checked above: man-db is not installed).
unit=/lib/systemd/system/mailtwind.service
[[ -f $root$unit ]] || fail "$unit missing"
out=$(in_root systemd-analyze verify --man=no mailtwind.service postfix@-.service 2>&1) ||
	fail "systemd-analyze verify: $out"
# Only lines about our units count (systemd also comments on others').
if grep -E 'mailtwin|postfix@' <<<"$out"; then fail "systemd-analyze verify complains (above)"; fi
grep -q 'postfix@.service.d/mailtwin.conf' <<<"$(in_root systemd-delta --type=extended --no-pager)" ||
	fail "the postfix@.service drop-in is not seen by systemd: $(in_root systemd-delta --no-pager)"
grep -qx 'Type=notify' "$root$unit" || fail "mailtwind.service is not Type=notify"
echo "3. systemd-analyze verify: mailtwind.service and postfix@-.service OK; drop-in postfix@.service.d/mailtwin.conf active"

# The unit's command line, as systemd would run it.
read -r -a exec_start <<<"$(sed -n 's/^ExecStart=//p' "$root$unit")"
((${#exec_start[@]} > 0)) || fail "no ExecStart in $unit"
cfg=$(sed -n 's/.*--config \(\S*\).*/\1/p' <<<"${exec_start[*]}")
[[ -n $cfg && -f $root$cfg ]] || fail "the unit's configuration '$cfg' is not installed"

# 4. The example configuration is refused with a clear message, exit 78.
set +e
out=$(in_root "${exec_start[@]}" 2>&1)
rc=$?
set -e
((rc == 78)) || fail "ExecStart on the example config exited $rc, want 78 (EX_CONFIG): $out"
grep -q "name may use only letters" <<<"$out" && grep -q "not starting" <<<"$out" ||
	fail "no clear message for the example's placeholders: $out"
grep -q '^RestartPreventExitStatus=78$' "$root$unit" || fail "the unit would restart a refused configuration"
echo "4. ExecStart on the example $cfg: exit 78, '$(grep -o 'not starting.*' <<<"$out")'"

# 5. A configured standby. Its certificates come from the lab's maker
# (lab/mailtwin.sh: mt_ca, mt_cert); the CA's key stays outside /etc/mailtwin.
pki=$root/etc/mailtwin
# shellcheck source=../../lab/mailtwin.sh
. "$REPO/lab/mailtwin.sh"
mt_ca "$root/tmp" "test CA" && cp "$root/tmp/ca.pem" "$pki/ca.pem" &&
	mt_cert "$root/tmp" mx2 "$pki/node" || fail "certificates"
sed -i -e 's/^name = .*/name = "mx2"/' -e 's/^cluster = .*/cluster = "pkgtest"/' \
	-e 's/^peer_name = .*/peer_name = "mx1"/' \
	-e 's/^listen = "192.0.2.2:7525"/listen = "127.0.0.1:7525"/' \
	-e 's/^peer = .*/peer = "127.0.0.1:7526"/' \
	-e 's/^# listen = "192.0.2.2:9725"/listen = "127.0.0.1:9725"/' "$root$cfg"
in_root cp /usr/share/postfix/main.cf.debian /etc/postfix/main.cf
in_root postconf -e enable_long_queue_ids=yes myhostname=mx2.pkgtest.example
in_root mailtwin postfix-config --apply >/dev/null || fail "mailtwin postfix-config --apply"
out=$(in_root mailtwin check-config "$cfg") || fail "check-config: $out"
# The directories the unit has systemd create.
for d in State Runtime; do
	name=$(sed -n "s/^${d}Directory=//p" "$root$unit")
	mode=$(sed -n "s/^${d}DirectoryMode=//p" "$root$unit")
	[[ -n $name ]] || fail "the unit has no ${d}Directory="
	base_dir=$([[ $d == State ]] && echo /var/lib || echo /run)
	install -d -m "${mode:-0755}" "$root$base_dir/$name"
done
log=$root/tmp/mailtwind.log
unshare --net -- bash -c 'ip link set lo up && exec chroot "$0" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"' \
	"$root" "${exec_start[@]}" >"$log" 2>&1 &
pid=$!
sock=$(sed -n 's/^control_socket = "\(.*\)"/\1/p' "$root$cfg")
for ((i = 0; i < 100; i++)); do
	[[ -S $root$sock ]] && break
	kill -0 "$pid" 2>/dev/null || fail "mailtwind exited: $(tail -5 "$log")"
	sleep 0.1
done
[[ -S $root$sock ]] || fail "no control socket $sock after 10 s: $(tail -5 "$log")"
status=$(in_root mailtwin status) || fail "mailtwin status: $status"
grep -q '^role .*standby' <<<"$status" || fail "not a standby: $status"
metrics=$(nsenter --net="/proc/$pid/ns/net" python3 -c 'import urllib.request
print(urllib.request.urlopen("http://127.0.0.1:9725/metrics", timeout=5).read().decode())') ||
	fail "no metrics"
grep -q '^mailtwin_role_info{node="mx2",cluster="pkgtest",value="standby"} 1$' <<<"$metrics" ||
	fail "metrics do not say standby: $(grep role <<<"$metrics")"
echo "5. ExecStart on a configured standby: $(grep '^role' <<<"$status" | tr -s ' '); $(grep -c '^mailtwin_' <<<"$metrics") metrics"
kill -TERM "$pid"
set +e
wait "$pid"
rc=$?
set -e
pid=
((rc == 0)) || fail "mailtwind exited $rc on SIGTERM: $(tail -5 "$log")"
grep -q "mailtwind stopped" "$log" || fail "no clean stop in the log"
echo "   SIGTERM: stopped cleanly"

# 6. The old primary boots. Its state: primary (unconfirmed: no peer here).
rm -f "$root/var/lib/mailtwin/state.json"
sed -i 's/^role = .*/role = "primary"/' "$root$cfg"
unshare --net -- bash -c 'ip link set lo up && exec chroot "$0" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"' \
	"$root" "${exec_start[@]}" >"$log" 2>&1 &
pid=$!
for ((i = 0; i < 100; i++)); do
	[[ -S $root$sock ]] && break
	sleep 0.1
done
status=$(in_root mailtwin status) || fail "mailtwin status (primary): $status"
grep -q 'EPOCH UNCONFIRMED' <<<"$status" || fail "the primary does not wait for its peer: $status"
kill -TERM "$pid"
wait "$pid" || fail "mailtwind (primary) exited $? on SIGTERM: $(tail -5 "$log")"
pid=
grep -q '"role": *"primary"' "$root/var/lib/mailtwin/state.json" ||
	fail "no primary state: $(cat "$root/var/lib/mailtwin/state.json")"
# Its stale queue: one message for a local user in incoming/, which
# Postfix's queue manager delivers as soon as Postfix starts. Queued by
# this root's own Postfix, in a private network, without its queue manager.
in_root useradd -m alice
in_root postconf -e alias_maps= alias_database= mydestination=localhost master_service_disable=qmgr.unix \
	maillog_file=/var/log/postfix.log
unshare --net -- bash -c 'ip link set lo up && exec chroot "$0" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin postfix start' \
	"$root" >"$root/tmp/postfix-start.log" 2>&1 || fail "postfix start (to queue the stale message): $(cat "$root/tmp/postfix-start.log" "$root/var/log/postfix.log")"
echo "Subject: stale" | in_root sendmail -f root@localhost alice@localhost || fail "sendmail"
incoming() { [[ -n $(find "$root/var/spool/postfix/incoming" -type f -perm -u=x) ]]; }
for ((i = 0; i < 100; i++)); do incoming && break; sleep 0.1; done
in_root postfix stop >/dev/null 2>&1 || fail "postfix stop"
incoming || fail "no message in incoming/"
in_root postconf -X master_service_disable
# Debian's units as after a normal installation, mailtwind enabled.
in_root systemctl enable mailtwind.service postfix.service >/dev/null 2>&1
[[ -e $root/etc/systemd/system/multi-user.target.wants/postfix.service ]] || fail "postfix.service not enabled"
rm -f "$root/usr/sbin/policy-rc.d"

for m in var/cache/apt/archives dev/pts dev proc; do
	umount "$root/$m"
done
# systemd-nspawn wants a terminal for the container's console: script(1).
script -qfc "exec systemd-nspawn -D $root -b --register=no --keep-unit --private-network" \
	"$root.console" >/dev/null 2>&1 </dev/null &
boot=$!
booted() {
	local t m
	t=$(in_ct systemctl show -P ConditionTimestampMonotonic postfix@-.service 2>/dev/null) || return 1
	m=$(in_ct systemctl show -P ActiveState mailtwind.service 2>/dev/null) || return 1
	[[ ${t:-0} != 0 && ($m == activating || $m == active) ]]
}
for ((i = 0; i < 600; i++)); do booted && break; sleep 0.1; done
booted || fail "the container did not boot in 60 s: leader pid $(ct_leader || echo none), postfix@-.service ConditionTimestampMonotonic=$(in_ct systemctl show -P ConditionTimestampMonotonic postfix@-.service 2>&1), mailtwind.service $(in_ct systemctl show -P ActiveState mailtwind.service 2>&1); console: $(tail -5 "$root.console")"
sleep 5  # a Postfix started at boot would have delivered by now
[[ -s $root/var/mail/alice ]] && fail "the stale queue was delivered at boot: $(grep -c '^From ' "$root/var/mail/alice") message(s) in alice's mailbox"
cond=$(in_ct systemctl show -P ConditionResult postfix@-.service)
[[ $cond == no ]] || fail "Debian's postfix@-.service was not skipped (ConditionResult=$cond)"
# A master process, not `postfix status`: that reports "running" while
# mailtwind holds the master's lock to keep Postfix stopped (and names it).
master_runs() { in_ct sh -c 'for c in /proc/[0-9]*/comm; do [ "$(cat "$c" 2>/dev/null)" = master ] && exit 0; done; exit 1'; }
master_runs && fail "Postfix runs after the boot: $(in_ct systemctl status postfix@-.service | head)"
# mailtwind holds the master's lock, with its line in the file (postfix
# status shows it; without a terminal postfix-script logs, not prints).
in_ct flock -n /var/spool/postfix/pid/master.pid true && fail "nobody holds Postfix's master lock while the node must not serve"
guard=$(head -1 "$root/var/spool/postfix/pid/master.pid")
[[ $guard == *"mailtwind keeps this Postfix stopped"* ]] || fail "master.pid does not say that mailtwind keeps Postfix stopped: $guard"
incoming || fail "the stale message is gone from incoming/"
state=$(in_ct systemctl show -P ActiveState mailtwind.service)
mpid=$(in_ct systemctl show -P MainPID mailtwind.service)
# Waiting for its peer is not "ready": activating (the daemon does not
# send READY=1 yet at all; once it does, only on a confirmed epoch).
[[ $state == activating && $mpid != 0 ]] || fail "mailtwind.service is $state (pid $mpid), want activating (waiting for its peer)"
st=$(in_ct mailtwin status) || fail "mailtwin status in the container: $st"
grep -q 'EPOCH UNCONFIRMED' <<<"$st" || fail "mailtwind is not waiting for its peer: $st"
pre=$(in_ct systemctl show -P ExecStartPre mailtwind.service)
[[ $pre == *configure-instance.sh*"code=exited ; status=0 }"* && -f $root/var/spool/postfix/etc/services ]] ||
	fail "ExecStartPre did not prepare Postfix's chroot: $pre"
nnp=$(in_ct systemctl show -P NoNewPrivileges mailtwind.service)
[[ $nnp == no ]] || fail "NoNewPrivileges=$nnp: sendmail's set-group-ID postdrop would fail under the unit"
# An administrator's `postfix start` cannot start it either: mailtwind
# holds the master's lock while the node must not serve.
hand=$(in_ct postfix start 2>&1) && fail "postfix start by hand on the unconfirmed old primary succeeded: $hand"
sleep 1
master_runs && fail "postfix start by hand started a master on the unconfirmed old primary"
echo "6. old primary booted under systemd: postfix@-.service skipped (ConditionResult=$cond), Postfix not running, 0 deliveries of its queued message; mailtwind.service $state (pid $mpid), epoch unconfirmed; postfix start by hand refused"

# 7. Serving under the unit's hardening: Postfix runs and delivers.
out=$(in_ct mailtwin promote --force 2>&1) || fail "promote --force: $out"
delivered() { [[ -s $root/var/mail/alice ]]; }
for ((i = 0; i < 300; i++)); do delivered && break; sleep 0.1; done
delivered || fail "Postfix under mailtwind.service did not deliver: $(tail -5 "$root/var/log/postfix.log")"
master_runs || fail "Postfix does not run after promote"
master=$(head -1 "$root/var/spool/postfix/pid/master.pid" | tr -d ' ')
cg=$(in_ct cat "/proc/$master/cgroup" | grep -o 'mailtwind.service' | head -1)
[[ $cg == mailtwind.service ]] || fail "Postfix's master is not in mailtwind.service: $(in_ct cat "/proc/$master/cgroup")"
# Serving is "ready": READY=1 reached systemd through the unit's notify
# socket (Type=notify), so `systemctl start` would return now.
active() { [[ $(in_ct systemctl show -P ActiveState mailtwind.service) == active ]]; }
for ((i = 0; i < 100; i++)); do active && break; sleep 0.1; done
active || fail "mailtwind.service is $(in_ct systemctl show -P ActiveState mailtwind.service) after serving, want active (sd_notify READY=1)"
echo "7. promote --force: Postfix started inside mailtwind.service (master pid $master), the message delivered to alice; the unit is active (READY=1): '$(in_ct systemctl show -P StatusText mailtwind.service)'"
container_poweroff
boot=
echo "PASS: package"
