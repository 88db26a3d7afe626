#!/bin/bash
#
# t-21-powercut: a 250 in sync mode survives the standby's power loss.
# Both nodes' disks are lab/powerfs: a power cut keeps only what fsync and
# directory fsync made durable (the page cache is gone, unlike a kill -9).
# Under load (sync mode, through the gate), with real Postfix:
#   1. standby-first: PC_T13_CUTS (8) power cuts of the standby at random
#      moments; after each, every message whose client got 250 before it is
#      committed in the standby's mirror, once. Then the standby's power is
#      cut once more and the primary killed; the standby restarts on what
#      survived and is promoted: every such message is delivered exactly once.
#   2. the negative control: the same with the mirror's fsyncs switched off
#      (MAILTWIN_TEST_MIRROR_SYNC=none): messages must be lost, or this test
#      could not fail.
# Each part is a lab of its own (lab/powercut_run.sh). t-22 cuts the power
# during promotion; bench/run powercut is the long form (>= 200 cuts).
set -euo pipefail
. "$(dirname "$0")/../powercut_lib.sh"
cuts=${PC_T13_CUTS:-8}
pc_lab "1. standby-first" standby-first "$cuts"
((CUTS >= cuts + 1 && ACKED > 0)) || { echo "FAIL: nothing was tested"; exit 1; }
((LOST == 0 && DUPS == 0)) || { echo "FAIL: acknowledged mail lost ($LOST) or duplicated ($DUPS) by a power cut"; exit 1; }
((STUCK == 0)) || { echo "FAIL: the promoted standby did not deliver $STUCK acknowledged messages"; exit 1; }
pc_lab "2. negative control (no fsync in the mirror)" standby-first 2 PC_MIRROR_SYNC=none
((LOST > 0)) || { echo "FAIL: the mirror synced nothing and no message was lost: this test cannot fail"; exit 1; }
echo "PASS: t-21-powercut"
