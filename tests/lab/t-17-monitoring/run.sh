#!/bin/bash
#
# t-17-monitoring: the shipped monitoring (monitoring/) as operators run it.
# A real Prometheus on the client host scrapes both nodes' /metrics with the
# shipped alert rules (their `for:` shortened to 0s, the expressions as
# shipped):
#   1. a healthy pair under mail: both targets up, no alert fires; every
#      metric name that the rules and the Grafana dashboard use is one that
#      the nodes really export (primary and standby side);
#   2. backup's mailtwind dies: MailtwinDown, MailtwinLinkDown and
#      MailtwinNoStandby fire.
. "$(dirname "$0")/../lib.sh"

mon=$REPO/monitoring
export MT_METRICS_PORT=9725
pair_setup t-17
mt_gate main
mt_gate backup
pair_start
start_sender 20 "a@sink.lab.test"

# Prometheus on the client host: scrape every second, evaluate every second.
prom=$LAB_DIR/prometheus
mkdir -p "$prom/data"
sed 's/^\(\s*\)for: .*/\1for: 0s/' "$mon/mailtwin-alerts.yml" >"$prom/alerts.yml"
cat >"$prom/prometheus.yml" <<EOT
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [$prom/alerts.yml]
scrape_configs:
  - job_name: mailtwin
    static_configs:
      - targets: ["$(lab_ip main):9725", "$(lab_ip backup):9725"]
EOT
promtool check config "$prom/prometheus.yml" >/dev/null || fail "promtool check config"
lab_bg client "$prom/prometheus.log" prometheus --config.file="$prom/prometheus.yml" \
	--storage.tsdb.path="$prom/data" --web.listen-address=127.0.0.1:9090 >/dev/null

# api PATH: GET Prometheus' HTTP API on the client host, prints .data as JSON.
api() {
	lab_exec client python3 -c '
import json, sys, urllib.request
r = json.load(urllib.request.urlopen("http://127.0.0.1:9090/api/v1/" + sys.argv[1], timeout=5))
print(json.dumps(r["data"]))' "$1" 2>/dev/null
}
targets_up() {
	[[ $(api targets | python3 -c 'import json, sys
print(sum(t["health"] == "up" for t in json.load(sys.stdin)["activeTargets"]))') == 2 ]]
}
# firing: the names of the alerts firing now, sorted, one line.
firing() {
	api alerts | python3 -c 'import json, sys
print(" ".join(sorted({a["labels"]["alertname"] for a in json.load(sys.stdin)["alerts"] if a["state"] == "firing"})))'
}
lab_wait_for 30 targets_up || fail "Prometheus does not scrape both nodes: $(api targets)"
sleep 5  # a few evaluations

# 1. Healthy: nothing fires; every name used is exported.
[[ -z $(firing) ]] || fail "alerts fire on a healthy pair: $(firing)"
api "label/__name__/values" | python3 -c 'import json, sys; print("\n".join(json.load(sys.stdin)))' \
	>"$LAB_DIR/exported"
grep -ho 'mailtwin_[a-z][a-z0-9_]*' "$mon/mailtwin-alerts.yml" "$mon/grafana-dashboard.json" |
	sort -u >"$LAB_DIR/used"
unknown=$(comm -23 "$LAB_DIR/used" <(sort -u "$LAB_DIR/exported"))
[[ -z $unknown ]] || fail "the rules or the dashboard use metrics no node exports: $unknown"
python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
bad = [p["title"] for p in d["panels"] if not p.get("targets") or not all(t.get("expr") for t in p["targets"])]
sys.exit("panels without a query: %s" % bad if bad else 0)' "$mon/grafana-dashboard.json" ||
	fail "grafana dashboard"
echo "1. healthy pair: no alert; the rules and the dashboard use $(wc -l <"$LAB_DIR/used") metrics, all exported ($(wc -l <"$LAB_DIR/exported") names in all)"

# 2. The standby's daemon dies.
mt_kill backup
want="MailtwinDown MailtwinLinkDown MailtwinNoStandby"
has_all() { local f; f=" $(firing) "; for a in $want; do [[ $f == *" $a "* ]] || return 1; done; }
lab_wait_for 30 has_all || fail "after backup's mailtwind died, firing: '$(firing)', want at least $want"
echo "2. backup's mailtwind killed: firing $(firing)"
pass
