#!/bin/bash
# monitoring: the shipped alert rules load (promtool check rules) and fire as
# monitoring/mailtwin-alerts-test.yml says (promtool test rules); the Grafana
# dashboard is JSON whose every panel has a query. (tests/lab/t-15-monitoring
# runs them in a real Prometheus against a real pair.)
set -euo pipefail
cd "$(dirname "$0")/../../monitoring"
promtool check rules mailtwin-alerts.yml
promtool test rules mailtwin-alerts-test.yml
python3 - grafana-dashboard.json <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
panels = d.get("panels") or sys.exit("no panels")
bad = [p.get("title") for p in panels if not p.get("targets") or not all(t.get("expr") for t in p["targets"])]
if bad:
    sys.exit(f"panels without a query: {bad}")
print(f"grafana-dashboard.json: {len(panels)} panels")
PY
