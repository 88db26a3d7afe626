#!/bin/sh
# A notification hook for t-06: one line per call, "SEQ KIND EPOCH REASON",
# in $HOOK_DIR/NODE.hook (HOOK_DIR comes from mailtwind's environment, or
# the node's directory two levels above its state directory).
dir=${HOOK_DIR:-/tmp}
echo "$MAILTWIN_EVENT_SEQ $MAILTWIN_EVENT $MAILTWIN_EPOCH $MAILTWIN_REASON" >>"$dir/$MAILTWIN_NODE.hook"
