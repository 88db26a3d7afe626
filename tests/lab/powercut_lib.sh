# shellcheck shell=bash
#
# powercut_lib.sh: for t-21 and t-22: pc_lab LABEL MODE CUTS [ENV...] runs one
# lab of lab/powercut_run.sh and sets CUTS ACKED LOST DUPS STUCK UNPROTECTED from its
# result line (and prints its story).
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
pc_lab() {
	local label=$1 mode=$2 n=$3 out
	shift 3
	out=$(env "$@" bash "$REPO/lab/powercut_run.sh" "$mode" "$n" 2>&1) || {
		echo "$out" | tail -30
		echo "FAIL: $label: the run itself failed"
		exit 1
	}
	echo "$out" | grep -v '^PC ' | sed "s/^/   /"
	line=$(grep '^PC ' <<<"$out" | tail -1)
	[[ $line =~ cuts=([0-9]+)\ acked=([0-9]+)\ lost=([0-9]+)\ duplicated=([0-9]+)\ stuck=([0-9]+) ]] ||
		{ echo "FAIL: $label: no result line"; exit 1; }
	CUTS=${BASH_REMATCH[1]} ACKED=${BASH_REMATCH[2]} LOST=${BASH_REMATCH[3]} DUPS=${BASH_REMATCH[4]}
	STUCK=${BASH_REMATCH[5]}
	UNPROTECTED=0
	[[ $line =~ unprotected=([0-9]+) ]] && UNPROTECTED=${BASH_REMATCH[1]}
	echo "$label: $line"
}
