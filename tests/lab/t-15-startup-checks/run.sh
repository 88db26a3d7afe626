#!/bin/bash
#
# t-15-startup-checks: a careless administrator cannot start what would hurt.
#   1. a second mailtwind with the same configuration refuses to start (the
#      node's lock), and the running daemon stays reachable: its control
#      socket is neither replaced nor removed;
#   2. mailtwind refuses to start with what `mailtwin check-config` rejects,
#      with the same words: a mirror on another filesystem (promotion would
#      strand the mirrored mail), a mirror inside the queue, a sync_timeout
#      too close to Postfix's smtpd_proxy_timeout;
#   3. with the good file again, the pair replicates.
. "$(dirname "$0")/../lib.sh"
export MT_FAILOVER=manual

pair_setup t-15
mkdir -p "$LAB_DIR/other-fs"
lab_tmpfs "$LAB_DIR/other-fs" 16m
mt_gate backup || fail "postfix-config --apply on backup"
pair_start

# 1. A second daemon for backup's node.
second=$LAB_DIR/backup/second.log
# refuses_to_start LOG: mailtwind with backup's file exits by itself, non-zero
# (a daemon still running after 10 s is killed: that counts as started).
refuses_to_start() {
	local rc=0
	lab_exec backup timeout 10 "$MAILTWIN_BIN/mailtwind" --config "$LAB_DIR/backup/mailtwin.toml" \
		>"$1" 2>&1 || rc=$?
	((rc != 0 && rc != 124))
}
refuses_to_start "$second" || fail "a second mailtwind started for the same node"
[[ -S $LAB_DIR/backup/mailtwin/control.sock ]] || fail "the second mailtwind removed the control socket"
[[ $(mt_status backup role) == standby ]] || fail "the running daemon cannot be reached any more"
mt "backup" status >/dev/null || fail "mailtwin status cannot reach the running daemon"
grep -q "another mailtwind (pid [0-9]*) already runs for this node" "$second" ||
	fail "the second mailtwind did not say why: $(tail -3 "$second")"
echo "1. second daemon: $(grep -o "another mailtwind.*already runs for this node" "$second"); the first still answers"

# 2. What check-config rejects, mailtwind refuses, in the same words.
mt_stop backup
cp "$LAB_DIR/backup/mailtwin.toml" "$LAB_DIR/backup/mailtwin.toml.good"
# refused_like_check_config WHAT: backup's file is rejected by check-config
# and mailtwind refuses to start with the same error lines.
refused_like_check_config() {
	local what=$1 conf=$LAB_DIR/backup/mailtwin.toml checked started
	checked=$(mt backup check-config "$conf" 2>&1) && fail "$what: check-config accepted it"
	refuses_to_start "$LAB_DIR/backup/refused.log" || fail "$what: mailtwind started"
	[[ ! -S $LAB_DIR/backup/mailtwin/control.sock ]] || fail "$what: a refused mailtwind left a socket"
	# check-config: "error: TEXT"; mailtwind: "... critical FILE: TEXT".
	started=$(sed -n "s|.* critical $conf: \\(.*\\)|\\1|p" "$LAB_DIR/backup/refused.log" |
		grep -v ' error(s); not starting' | sort)
	checked=$(sed -n 's/^error: //p' <<<"$checked" | sort)
	[[ -n $checked && $checked == "$started" ]] ||
		fail "$what: mailtwind's words differ from check-config's:"$'\n'"check-config: $checked"$'\n'"mailtwind:    $started"
	echo "   $what: refused ($(head -c 110 <<<"$checked")...)"
}
sed -i "s|^mirror_dir = .*|mirror_dir = \"$LAB_DIR/other-fs/mirror\"|" "$LAB_DIR/backup/mailtwin.toml"
refused_like_check_config "mirror on another filesystem"
cp "$LAB_DIR/backup/mailtwin.toml.good" "$LAB_DIR/backup/mailtwin.toml"
sed -i "s|^mirror_dir = .*|mirror_dir = \"$LAB_DIR/backup/spool/mirror\"|" "$LAB_DIR/backup/mailtwin.toml"
refused_like_check_config "mirror inside the queue"
cp "$LAB_DIR/backup/mailtwin.toml.good" "$LAB_DIR/backup/mailtwin.toml"
lab_postconf backup -P "$(mt_public_service backup)/inet/smtpd_proxy_timeout=1s"
refused_like_check_config "sync_timeout too close to smtpd_proxy_timeout"
lab_postconf backup -PX "$(mt_public_service backup)/inet/smtpd_proxy_timeout"
echo "2. what check-config rejects, mailtwind refuses, in the same words"

# 3. The good file: the pair replicates again.
mt backup check-config "$LAB_DIR/backup/mailtwin.toml" >/dev/null || fail "check-config rejects the good file"
mt_start backup >/dev/null || fail "backup did not start with the good file"
mt_wait_state main live 20 || fail "the link did not come back"
send_mail s@client.lab.test a@dead.lab.test >/dev/null
mt_wait_synced main backup 20 || fail "mirror did not converge"
echo "3. the good file: the pair replicates"

pass
