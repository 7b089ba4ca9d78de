#!/usr/bin/env bash
# Checks the deploy kit (deploy/): the systemd units with `systemd-analyze verify` and
# `systemd-analyze security` (overall exposure at most 2.0) where systemd-analyze is present,
# and the Kubernetes manifests against the Kubernetes API schemas with kubernetes-validate
# (PyPI), strictly (unknown fields refused), and deploy/compose/compose.yaml against the Compose
# Specification schema (check-jsonschema, PyPI). Called by scripts/test.sh; needs the built binary
# (ExecStart is pointed at it, since verify checks that the command exists).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${RCPFED_BIN:-$PWD/target/debug/rcpfed}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

if command -v systemd-analyze >/dev/null 2>&1; then
  for unit in deploy/systemd/*.service; do
    name="$(basename "$unit")"
    sed "s#/usr/local/bin/rcpfed#$BIN#" "$unit" > "$tmp/$name"
    systemd-analyze verify "$tmp/$name"
    # --threshold is on the tool's 0–100 scale: 20 = exposure 2.0.
    if ! systemd-analyze security --offline=yes --threshold=20 "$tmp/$name" > "$tmp/security.txt" 2>&1; then
      cat "$tmp/security.txt"
      echo "deploy: $name is rated above exposure 2.0" >&2
      exit 1
    fi
    echo "deploy: $name verified; $(tail -n 1 "$tmp/security.txt")"
  done
else
  echo "deploy: systemd-analyze not found; systemd units not checked"
fi

if [ ! -x .tools/venv/bin/kubernetes-validate ]; then
  echo "installing kubernetes-validate (PyPI) into .tools/venv"
  .tools/venv/bin/pip install --quiet --disable-pip-version-check "kubernetes-validate==1.37.0"
fi
.tools/venv/bin/kubernetes-validate --strict --quiet deploy/kubernetes/*.yaml
echo "deploy: Kubernetes manifests valid (kubernetes-validate --strict, Kubernetes 1.37)"

# The compose file against the Compose Specification's JSON schema (vendored by check-jsonschema,
# PyPI); no docker engine or `docker compose` is needed for that.
if [ ! -x .tools/venv/bin/check-jsonschema ]; then
  echo "installing check-jsonschema (PyPI) into .tools/venv"
  .tools/venv/bin/pip install --quiet --disable-pip-version-check "check-jsonschema==0.39.0"
fi
.tools/venv/bin/check-jsonschema --builtin-schema vendor.compose-spec deploy/compose/compose.yaml
echo "deploy: compose file valid (Compose Specification schema)"

# Prometheus alert rules and the Grafana dashboard: valid YAML/JSON of their formats, and every
# rcpfed and process metric they use is registered somewhere in the code (promtool and Grafana
# are not installed here; the expressions are not evaluated).
.tools/venv/bin/python - <<'PY'
import json, pathlib, re, sys, yaml
code = "".join(p.read_text() for p in pathlib.Path("crates").rglob("*.rs"))
problems = []

def unknown_metrics(where, expr):
    for name in set(re.findall(r"\b(?:rcpfed|process)_[a-z_]+", expr)):
        base = re.sub(r"_(total|bucket|sum|count)$", "", name)
        if f'"{base}"' not in code:
            problems.append(f"{where}: {name} is not a metric rcpfed registers")

rules = yaml.safe_load(pathlib.Path("deploy/prometheus/alerts.yml").read_text())
for group in rules["groups"]:
    for rule in group["rules"]:
        for key in ("alert", "expr", "labels", "annotations"):
            if key not in rule:
                problems.append(f"alerts.yml {rule.get('alert')}: no {key}")
        unknown_metrics(f"alerts.yml {rule.get('alert')}", rule.get("expr", ""))
dashboard = json.loads(pathlib.Path("deploy/grafana/rcpfed-dashboard.json").read_text())
exprs = 0
for panel in dashboard["panels"]:
    if panel["type"] == "row":
        continue
    for key in ("title", "gridPos", "datasource", "targets"):
        if key not in panel:
            problems.append(f"dashboard panel {panel.get('title')}: no {key}")
    for target in panel.get("targets", []):
        exprs += 1
        unknown_metrics(f"dashboard panel {panel.get('title')!r}", target["expr"])
for variable in dashboard["templating"]["list"]:
    unknown_metrics(f"dashboard variable {variable['name']}", variable.get("definition", ""))
if problems:
    sys.exit("deploy kit:\n  " + "\n  ".join(problems))
print(f"deploy: {sum(len(g['rules']) for g in rules['groups'])} Prometheus alert rules and "
      f"{exprs} Grafana dashboard queries parse and name only metrics rcpfed exports")
PY
