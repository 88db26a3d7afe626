#!/bin/bash
#
# powercut_run.sh MODE CUTS: one lab of power cuts (lab/powercut.sh's
# pc_run): CUTS power cuts of the standby under load, each checked against
# its mirror, then the story MODE (standby-first: the standby's power, then
# the primary; primary-first: the primary, then the standby's power during
# its promotion), the standby promoted on what survived, every 250 counted
# at the destination. Last line: "PC mode=.. cuts=.. acked=.. lost=..
# duplicated=..". PC_MIRROR_SYNC=none: the negative control (the mirror
# syncs nothing). Run as root; used by t-21-powercut and bench/run powercut.
. "$(dirname "$0")/../tests/lab/lib.sh"
# shellcheck source=powercut.sh
. "$REPO/lab/powercut.sh"
pc_run "${1:?usage: powercut_run.sh standby-first|primary-first CUTS}" "${2:?}"
