#!/usr/bin/env bash
# Check the operator-facing observability files against a live server:
#   dashboard  deploy/grafana/aionbd-dashboard.json parses, has unique panel
#              ids, no overlapping panels, the ${DS_PROMETHEUS} data source
#              and the job/instance variables on every query
#   rules      promtool check rules deploy/prometheus/alerts.yml; every alert
#              has summary, description, severity and a runbook_url whose
#              anchor is a section of docs/runbook.md; promtool test rules
#              (each alert fires on a made-up failing series, stays quiet on
#              healthy ones; run on a copy without annotations)
#   server     starts the release binary on a temporary data directory (port
#              0, 2 shards, authentication on with a generated API key so the
#              per-tenant series exist, a memory budget), sends a little
#              traffic (a write, a search, a 404, a 401), scrapes
#              /metrics/prometheus?format=strict, runs promtool check metrics
#              on it and checks the traffic shows in it
#   names      every metric name in the rules' exprs and the dashboard's
#              queries (and template variable queries) is in that exposition
#              (_bucket/_sum/_count map to their histogram; `up` is
#              Prometheus' own), label values the queries match on exist, and
#              rate()/increase() only ever read counters or histograms
# Needs promtool (Debian: prometheus), python3 (stdlib only) and curl.
# AIONBD_BIN overrides the binary (default target/release/aionbd).
# Exits non-zero if any check fails; the last line is "N passed, N failed".
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
repo=$(pwd)
bin=${AIONBD_BIN:-$repo/target/release/aionbd}
dashboard=deploy/grafana/aionbd-dashboard.json
rules=deploy/prometheus/alerts.yml
runbook=docs/runbook.md
work=$(mktemp -d /tmp/aionbd-check-obs.XXXXXX)
pid=
cleanup() {
  if [ -n "$pid" ]; then
    kill -TERM "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
passed=0
failed=0
failures=()

record() {  # record NAME RC
  if [ "$2" = 0 ]; then
    passed=$((passed + 1)); echo "   ok"
  else
    failed=$((failed + 1)); failures+=("$1"); echo "   FAILED (exit $2)"
  fi
}

step() {  # step NAME COMMAND...: run one check in a subshell, keep going on failure
  local name=$1; shift
  echo "== $name"
  (set -e; "$@") > "$work/step.log" 2>&1
  local rc=$?
  sed 's/^/   /' "$work/step.log"
  record "$name" "$rc"
}

# --- the parsing helpers (python3, stdlib only) -----------------------------
cat > "$work/obs.py" <<'PY'
"""Helpers for scripts/check-observability.sh (python3, stdlib only)."""
import json
import re
import sys

# ---- PromQL: metric names and their selectors --------------------------------
TOKEN = re.compile(r'''
    (?P<ws>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<str>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<num>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[a-zA-Z]*)
  | (?P<var>\$\{?[A-Za-z_][A-Za-z0-9_]*\}?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|!=|==|>=|<=|[(){}\[\],=<>+\-*/%^@])
''', re.X)
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
AGGREGATORS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
               "count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio"}
RANGE_FUNCS = {"rate", "irate", "increase"}


def tokens(expr):
    out, pos = [], 0
    while pos < len(expr):
        m = TOKEN.match(expr, pos)
        if not m:
            raise ValueError(f"cannot read PromQL at {expr[pos:pos + 20]!r}")
        pos = m.end()
        if m.lastgroup not in ("ws", "comment"):
            out.append((m.lastgroup, m.group()))
    return out


def selectors(expr):
    """[(metric name, label matcher text or '', innermost function)] of expr."""
    toks = tokens(expr)
    out, stack, i = [], [], 0

    def skip_to(j, close):
        while j < len(toks) and toks[j][1] != close:
            j += 1
        return j

    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1][1] if i + 1 < len(toks) else ""
        if text == "[":
            i = skip_to(i, "]")
        elif text == "{":
            j = skip_to(i, "}")
            out.append((None, "".join(t for _, t in toks[i + 1:j]), stack[-1] if stack else None))
            i = j
        elif text == "(":
            stack.append(None)
        elif text == ")":
            if stack:
                stack.pop()
        elif kind == "ident":
            low = text.lower()
            if low in LABEL_LISTS and nxt == "(":
                i = skip_to(i, ")")
            elif nxt == "(":
                stack.append(text)
                i += 1
            elif low in AGGREGATORS and nxt.lower() in ("by", "without"):
                pass
            elif low in KEYWORDS:
                pass
            else:
                sel = ""
                if nxt == "{":
                    j = skip_to(i + 1, "}")
                    sel = "".join(t for _, t in toks[i + 2:j])
                    i = j
                out.append((text, sel, stack[-1] if stack else None))
        i += 1
    return out


def equality_matchers(sel):
    """label="value" matchers with a literal value (no regex, no variable)."""
    return [(l, v) for l, op, v in re.findall(r'([A-Za-z_][A-Za-z0-9_]*)(=~|!~|!=|=)"((?:\\.|[^"\\])*)"', sel)
            if op == "=" and "$" not in v]


# ---- the rules file (line based: alerts.yml keeps every expr a block scalar) ---
def indent(line):
    return len(line) - len(line.lstrip(" "))


def read_rules(path):
    lines = open(path, encoding="utf-8").read().split("\n")
    rules, cur, i = [], None, 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^(\s*)- (alert|record):\s*(\S+)\s*$", line)
        if m:
            cur = {"kind": m.group(2), "name": m.group(3), "expr": None, "labels": {}, "annotations": {}, "line": i + 1}
            rules.append(cur)
            i += 1
            continue
        m = re.match(r"^(\s*)(expr|labels|annotations):\s*(.*)$", line)
        if m and cur is not None:
            base, key, val = len(m.group(1)), m.group(2), m.group(3).strip()
            block, j = [], i + 1
            while j < len(lines) and (not lines[j].strip() or indent(lines[j]) > base):
                block.append(lines[j])
                j += 1
            if key == "expr":
                if val in ("|", "|-", "|+", ">", ">-", ">+"):
                    cur["expr"] = "\n".join(block)
                else:
                    cur["expr"] = val.strip("'\"")
                    j = i + 1
            else:
                inner = min((indent(b) for b in block if b.strip()), default=0)
                for b in block:
                    mm = re.match(r"^\s*([A-Za-z_]+):\s*(.*)$", b)
                    if mm and indent(b) == inner:
                        cur[key][mm.group(1)] = mm.group(2).strip().strip("'\"")
            i = j
            continue
        i += 1
    return rules


def slug(heading):
    """GitHub's anchor for a Markdown heading."""
    s = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return s.replace(" ", "-")


def runbook_anchors(path):
    anchors, fenced = set(), False
    for line in open(path, encoding="utf-8"):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
            if m:
                anchors.add(slug(m.group(1)))
    return anchors


# ---- the dashboard -------------------------------------------------------------
def all_panels(dash):
    for p in dash.get("panels", []):
        yield p
        for q in p.get("panels", []) or []:
            yield q


def dashboard_queries(dash):
    """[(where, expr, is_variable_query)]"""
    out = []
    for p in all_panels(dash):
        for t in p.get("targets", []) or []:
            if "expr" in t:
                out.append((f"panel {p.get('id')} '{p.get('title')}' {t.get('refId')}", t["expr"], False))
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        m = re.match(r"^\s*label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$", q)
        if m:
            out.append((f"variable {v['name']}", m.group(1), True))
        elif re.match(r"^\s*label_values\(\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$", q):
            pass
        elif q.strip():
            out.append((f"variable {v['name']}", re.sub(r"^\s*query_result\((.*)\)\s*$", r"\1", q), True))
    return out


DS = "${DS_PROMETHEUS}"


def check_dashboard(path):
    errors = []
    dash = json.load(open(path, encoding="utf-8"))
    print(f"{path}: valid JSON, title '{dash.get('title')}', uid {dash.get('uid')}, schemaVersion {dash.get('schemaVersion')}")
    if not isinstance(dash.get("schemaVersion"), int) or dash["schemaVersion"] < 36:
        errors.append("schemaVersion should be 36 or newer")
    if not any(i.get("name") == "DS_PROMETHEUS" and i.get("pluginId") == "prometheus" for i in dash.get("__inputs", [])):
        errors.append("__inputs has no DS_PROMETHEUS Prometheus input")
    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    ds_var = variables.get("DS_PROMETHEUS", {})
    if ds_var.get("type") != "datasource" or ds_var.get("query") != "prometheus":
        errors.append("no datasource variable DS_PROMETHEUS of type prometheus")
    for name in ("job", "instance"):
        v = variables.get(name, {})
        if v.get("type") != "query" or (v.get("datasource") or {}).get("uid") != DS:
            errors.append(f"no query variable '{name}' on {DS}")
    print(f"variables: {', '.join(variables)}")
    ids, rects, n_rows, n_queries = {}, [], 0, 0
    for p in all_panels(dash):
        pid, kind, title = p.get("id"), p.get("type"), p.get("title")
        if not isinstance(pid, int):
            errors.append(f"panel '{title}' has no integer id")
        elif pid in ids:
            errors.append(f"panel id {pid} used by '{ids[pid]}' and '{title}'")
        else:
            ids[pid] = title
        g = p.get("gridPos") or {}
        if not all(isinstance(g.get(k), int) for k in "hwxy") or g["x"] + g["w"] > 24:
            errors.append(f"panel {pid} '{title}': bad gridPos {g}")
        else:
            rects.append((pid, g))
        if kind == "row":
            n_rows += 1
            continue
        if (p.get("datasource") or {}).get("uid") != DS:
            errors.append(f"panel {pid} '{title}': data source is not {DS}")
        targets = p.get("targets") or []
        if not targets:
            errors.append(f"panel {pid} '{title}': no query")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs):
            errors.append(f"panel {pid} '{title}': duplicate refId")
        for t in targets:
            n_queries += 1
            if not t.get("expr"):
                errors.append(f"panel {pid} '{title}' {t.get('refId')}: no expr")
            if (t.get("datasource") or {}).get("uid") != DS:
                errors.append(f"panel {pid} '{title}' {t.get('refId')}: data source is not {DS}")
    for a in range(len(rects)):
        for b in range(a + 1, len(rects)):
            (pa, ga), (pb, gb) = rects[a], rects[b]
            if ga["x"] < gb["x"] + gb["w"] and gb["x"] < ga["x"] + ga["w"] and \
               ga["y"] < gb["y"] + gb["h"] and gb["y"] < ga["y"] + ga["h"]:
                errors.append(f"panels {pa} and {pb} overlap")
    for where, expr, is_var in dashboard_queries(dash):
        try:
            sels = selectors(expr)
        except ValueError as e:
            errors.append(f"{where}: {e}")
            continue
        for name, sel, _ in sels:
            if name is None:
                errors.append(f"{where}: a selector without a metric name")
            elif not is_var and not ("$job" in sel and "$instance" in sel):
                errors.append(f"{where}: {name} is not filtered by $job and $instance")
    print(f"{len(ids)} panels ({n_rows} rows, {len(ids) - n_rows} graphs and stats), ids unique: "
          f"{'yes' if len(ids) == sum(1 for _ in all_panels(dash)) else 'no'}, no overlaps: "
          f"{'no' if any('overlap' in e for e in errors) else 'yes'}, {n_queries} queries, every selector "
          f"filtered by $job and $instance: {'no' if any('is not filtered' in e for e in errors) else 'yes'}")
    for e in errors:
        print("FAIL:", e)
    return 1 if errors else 0


def check_rules(path, runbook):
    errors = []
    rules = read_rules(path)
    anchors = runbook_anchors(runbook)
    alerts = [r for r in rules if r["kind"] == "alert"]
    names = [r["name"] for r in alerts]
    for n in sorted({n for n in names if names.count(n) > 1}):
        errors.append(f"alert {n} defined twice")
    for r in alerts:
        a, n = r["annotations"], r["name"]
        if not r["expr"]:
            errors.append(f"{n}: no expr")
        for key in ("summary", "description", "runbook_url"):
            if not a.get(key):
                errors.append(f"{n}: no {key} annotation")
        if r["labels"].get("severity") not in ("critical", "warning", "info"):
            errors.append(f"{n}: severity label should be critical, warning or info")
        url = a.get("runbook_url", "")
        anchor = url.rsplit("#", 1)[1] if "#" in url else ""
        if not url.split("#")[0].endswith("runbook.md") and not url.startswith("http"):
            errors.append(f"{n}: runbook_url {url!r} is not docs/runbook.md#... (nor a URL)")
        if anchor != n.lower():
            errors.append(f"{n}: runbook_url anchor {anchor!r} should be {n.lower()!r}")
        elif anchor not in anchors:
            errors.append(f"{n}: {runbook} has no section '## {n}' (anchor #{anchor})")
        print(f"{n:32} severity={r['labels'].get('severity', '?'):9} runbook #{anchor}"
              f"{' (section found)' if anchor in anchors else ''}")
    print(f"{len(alerts)} alerts, each with summary, description and runbook_url")
    for e in errors:
        print("FAIL:", e)
    return 1 if errors else 0


def strip_annotations(src, dst):
    """Copy the rules file without annotation blocks (for promtool test rules)."""
    lines = open(src, encoding="utf-8").read().split("\n")
    out, i = [], 0
    while i < len(lines):
        m = re.match(r"^(\s*)annotations:\s*$", lines[i])
        if m:
            base, i = len(m.group(1)), i + 1
            while i < len(lines) and (not lines[i].strip() or indent(lines[i]) > base):
                i += 1
            continue
        out.append(lines[i])
        i += 1
    open(dst, "w", encoding="utf-8").write("\n".join(out))
    return 0


# ---- the exposition ------------------------------------------------------------
def read_exposition(path):
    types, samples = {}, {}
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            types[name] = kind.strip()
        elif line.startswith("#") or not line.strip():
            continue
        else:
            m = re.match(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{.*\})?\s+(\S+)", line)
            if m:
                labels = dict(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)="((?:\\.|[^"\\])*)"', m.group(2) or ""))
                samples.setdefault(m.group(1), []).append((labels, float(m.group(3))))
    return types, samples


def family_of(name, types):
    if name in types:
        return name, types[name]
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[: -len(suffix)]
        if name.endswith(suffix) and (types.get(base) == "histogram" or
                                      (types.get(base) == "summary" and suffix != "_bucket")):
            return base, types[base]
    return None, None


def check_names(exposition, rules_path, dashboard_path):
    types, samples = read_exposition(exposition)
    used = {}  # name -> {"where": set, "selectors": [(sel, func, origin)]}
    for r in read_rules(rules_path):
        for name, sel, func in selectors(r["expr"] or ""):
            u = used.setdefault(name, {"where": set(), "uses": []})
            u["where"].add("rules")
            u["uses"].append((sel, func, f"alert {r['name']}"))
    dash = json.load(open(dashboard_path, encoding="utf-8"))
    for where, expr, _ in dashboard_queries(dash):
        for name, sel, func in selectors(expr):
            u = used.setdefault(name, {"where": set(), "uses": []})
            u["where"].add("dashboard")
            u["uses"].append((sel, func, where))
    errors, checked = [], 0
    print(f"exposition: {len(types)} metric families, {sum(len(v) for v in samples.values())} samples")
    for name in sorted(used, key=lambda n: (n is None, n or "")):
        where = "+".join(sorted(used[name]["where"]))
        if name is None:
            errors.append("a selector without a metric name: " + ", ".join(o for _, _, o in used[name]["uses"]))
            continue
        if name == "up":
            print(f"  skip    {name:58} (Prometheus' own)  [{where}]")
            continue
        checked += 1
        family, kind = family_of(name, types)
        status = "ok"
        if family is None or name not in samples:
            status = "MISSING"
            errors.append(f"{name} ({where}) is not in the exposition")
        else:
            for sel, func, origin in used[name]["uses"]:
                for label, value in equality_matchers(sel):
                    if not any(s.get(label) == value for s, _ in samples[name]):
                        errors.append(f"{origin}: {name}{{{label}=\"{value}\"}} matches no sample")
                if func in RANGE_FUNCS and kind not in ("counter", "histogram", "summary"):
                    errors.append(f"{origin}: {func}() over {name}, a {kind}")
        detail = f"{kind} {family}" if family and family != name else (kind or "-")
        print(f"  {status:7} {name:58} ({detail})  [{where}]")
    own = {n: u for n, u in used.items() if n != "up"}
    print(f"{checked} metric names checked ({sum(1 for u in own.values() if 'rules' in u['where'])} in the rules, "
          f"{sum(1 for u in own.values() if 'dashboard' in u['where'])} in the dashboard), "
          f"{len([e for e in errors if 'not in the exposition' in e])} missing")
    for e in errors:
        print("FAIL:", e)
    return 1 if errors else 0


def expect(exposition, *conditions):
    """conditions like 'aionbd_points==3' or 'aionbd_http_responses_total{status="4xx"}>=2'."""
    _, samples = read_exposition(exposition)
    bad = 0
    for c in conditions:
        m = re.match(r'^([A-Za-z_:][A-Za-z0-9_:]*)(\{.*\})?(==|>=)(\S+)$', c)
        name, sel, op, want = m.group(1), m.group(2) or "", m.group(3), float(m.group(4))
        labels = dict(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)="([^"]*)"', sel))
        values = [v for s, v in samples.get(name, []) if all(s.get(k) == x for k, x in labels.items())]
        ok = bool(values) and (values[0] == want if op == "==" else values[0] >= want)
        got = values[0] if values else "absent"
        print(f"  {'ok' if ok else 'FAIL':4} {name}{sel} = {got} (want {op} {want:.12g})")
        bad += not ok
    return 1 if bad else 0


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    sys.exit({"dashboard": check_dashboard, "rules": check_rules, "strip-annotations": strip_annotations,
              "names": check_names, "expect": expect}[cmd](*args))
PY
obs() { python3 "$work/obs.py" "$@"; }

# --- checks -------------------------------------------------------------------
tools() {
  local t missing=0
  for t in promtool python3 curl; do
    if command -v "$t" >/dev/null; then echo "$t: $(command -v "$t")"; else echo "missing: $t"; missing=1; fi
  done
  promtool --version 2>&1 | head -1
  [ -x "$bin" ] || { echo "no server binary at $bin (cargo build --release, or set AIONBD_BIN)"; missing=1; }
  [ "$missing" = 0 ]
}

promtool_rules() {
  promtool check rules "$rules"
}

# Each alert fires on a failing series (instance "a") and not on healthy or
# borderline ones ("b", "c"), on a copy of the rules without annotations
# (promtool compares annotations too; the templates are checked above).
test_rules() {
  obs strip-annotations "$rules" "$work/alerts-bare.yml"
  cat > "$work/alerts-test.yml" <<EOF
rule_files:
  - $work/alerts-bare.yml
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'up{job="aionbd", instance="a"}'
        values: '1 1 0x40'
      - series: 'up{job="aionbd", instance="b"}'
        values: '1x40'
      - series: 'aionbd_ready{job="aionbd", instance="a"}'
        values: '1 0x40'
      - series: 'aionbd_ready{job="aionbd", instance="b"}'
        values: '1x40'
      - series: 'aionbd_storage_available{job="aionbd", instance="a"}'
        values: '1 0x40'
      - series: 'aionbd_storage_available{job="aionbd", instance="b"}'
        values: '1x40'
      - series: 'aionbd_persistence_wal_disk_full{job="aionbd", instance="a"}'
        values: '0 1x40'
      - series: 'aionbd_persistence_wal_disk_full{job="aionbd", instance="b"}'
        values: '0x40'
      - series: 'aionbd_persistence_checkpoint_error_total{job="aionbd", instance="a"}'
        values: '0 0 1x40'
      - series: 'aionbd_persistence_checkpoint_error_total{job="aionbd", instance="b"}'
        values: '0x40'
      - series: 'aionbd_credential_reload_failures_total{job="aionbd", instance="a"}'
        values: '0 0 1x40'
      - series: 'aionbd_credential_reload_failures_total{job="aionbd", instance="b"}'
        values: '0x40'
      # a: 1/s 2xx, 0.2/s 5xx (17 %); b: 1.6 %; c: 33 % but only 2.5 errors in 5m
      - series: 'aionbd_http_responses_total{job="aionbd", instance="a", status="2xx"}'
        values: '0+60x40'
      - series: 'aionbd_http_responses_total{job="aionbd", instance="a", status="5xx"}'
        values: '0+12x40'
      - series: 'aionbd_http_responses_total{job="aionbd", instance="b", status="2xx"}'
        values: '0+60x40'
      - series: 'aionbd_http_responses_total{job="aionbd", instance="b", status="5xx"}'
        values: '0+1x40'
      - series: 'aionbd_http_responses_total{job="aionbd", instance="c", status="2xx"}'
        values: '0+1x40'
      - series: 'aionbd_http_responses_total{job="aionbd", instance="c", status="5xx"}'
        values: '0+0.5x40'
      # a: every request between 50 and 100 ms (p99 ~ 99.5 ms); b: between 25 and 50 ms (p99 ~ 49.75 ms)
      - series: 'aionbd_http_request_duration_seconds_bucket{job="aionbd", instance="a", le="0.025"}'
        values: '0x40'
      - series: 'aionbd_http_request_duration_seconds_bucket{job="aionbd", instance="a", le="0.05"}'
        values: '0x40'
      - series: 'aionbd_http_request_duration_seconds_bucket{job="aionbd", instance="a", le="0.1"}'
        values: '0+100x40'
      - series: 'aionbd_http_request_duration_seconds_bucket{job="aionbd", instance="a", le="+Inf"}'
        values: '0+100x40'
      - series: 'aionbd_http_request_duration_seconds_bucket{job="aionbd", instance="b", le="0.025"}'
        values: '0x40'
      - series: 'aionbd_http_request_duration_seconds_bucket{job="aionbd", instance="b", le="0.05"}'
        values: '0+100x40'
      - series: 'aionbd_http_request_duration_seconds_bucket{job="aionbd", instance="b", le="0.1"}'
        values: '0+100x40'
      - series: 'aionbd_http_request_duration_seconds_bucket{job="aionbd", instance="b", le="+Inf"}'
        values: '0+100x40'
      # a: 95 % of its budget; b: no budget (0); c: 50 %
      - series: 'aionbd_memory_used_bytes{job="aionbd", instance="a"}'
        values: '95x40'
      - series: 'aionbd_memory_budget_bytes{job="aionbd", instance="a"}'
        values: '100x40'
      - series: 'aionbd_memory_used_bytes{job="aionbd", instance="b"}'
        values: '95x40'
      - series: 'aionbd_memory_budget_bytes{job="aionbd", instance="b"}'
        values: '0x40'
      - series: 'aionbd_memory_used_bytes{job="aionbd", instance="c"}'
        values: '50x40'
      - series: 'aionbd_memory_budget_bytes{job="aionbd", instance="c"}'
        values: '100x40'
      # a: a large collection half outside its index; b: as little covered but
      # small (5000 points); c: large and 90 % covered
      - series: 'aionbd_collection_index_coverage_ratio{job="aionbd", instance="a", collection="big"}'
        values: '0.5x40'
      - series: 'aionbd_collection_points{job="aionbd", instance="a", collection="big"}'
        values: '20000x40'
      - series: 'aionbd_collection_index_coverage_ratio{job="aionbd", instance="b", collection="small"}'
        values: '0.5x40'
      - series: 'aionbd_collection_points{job="aionbd", instance="b", collection="small"}'
        values: '5000x40'
      - series: 'aionbd_collection_index_coverage_ratio{job="aionbd", instance="c", collection="big"}'
        values: '0.9x40'
      - series: 'aionbd_collection_points{job="aionbd", instance="c", collection="big"}'
        values: '20000x40'
      # a: every fdatasync between 50 and 100 ms (p99 ~ 99.5 ms); b: between 25 and 50 ms; c: none
      - series: 'aionbd_wal_fdatasync_duration_seconds_bucket{job="aionbd", instance="a", le="0.025"}'
        values: '0x40'
      - series: 'aionbd_wal_fdatasync_duration_seconds_bucket{job="aionbd", instance="a", le="0.05"}'
        values: '0x40'
      - series: 'aionbd_wal_fdatasync_duration_seconds_bucket{job="aionbd", instance="a", le="0.1"}'
        values: '0+100x40'
      - series: 'aionbd_wal_fdatasync_duration_seconds_bucket{job="aionbd", instance="a", le="+Inf"}'
        values: '0+100x40'
      - series: 'aionbd_wal_fdatasync_duration_seconds_bucket{job="aionbd", instance="b", le="0.025"}'
        values: '0x40'
      - series: 'aionbd_wal_fdatasync_duration_seconds_bucket{job="aionbd", instance="b", le="0.05"}'
        values: '0+100x40'
      - series: 'aionbd_wal_fdatasync_duration_seconds_bucket{job="aionbd", instance="b", le="0.1"}'
        values: '0+100x40'
      - series: 'aionbd_wal_fdatasync_duration_seconds_bucket{job="aionbd", instance="b", le="+Inf"}'
        values: '0+100x40'
      - series: 'aionbd_wal_fdatasync_duration_seconds_bucket{job="aionbd", instance="c", le="0.1"}'
        values: '0x40'
      - series: 'aionbd_wal_fdatasync_duration_seconds_bucket{job="aionbd", instance="c", le="+Inf"}'
        values: '0x40'
      # a: 2 GiB of WAL since the snapshot on shard 0, shard 1 small; b: exactly
      # 1 GiB; c: 2 GiB, a snapshot at 21m, 2 GiB again (pending anew)
      - series: 'aionbd_shard_wal_bytes_since_snapshot{job="aionbd", instance="a", shard="0"}'
        values: '2147483648x40'
      - series: 'aionbd_shard_wal_bytes_since_snapshot{job="aionbd", instance="a", shard="1"}'
        values: '8192x40'
      - series: 'aionbd_shard_wal_bytes_since_snapshot{job="aionbd", instance="b", shard="0"}'
        values: '1073741824x40'
      - series: 'aionbd_shard_wal_bytes_since_snapshot{job="aionbd", instance="c", shard="0"}'
        values: '2147483648x20 0 2147483648x20'
      # a: shard 0 80 ms late throughout, shard 1 7 ms (idle); b: exactly 50 ms;
      # c: 80 ms with one on-time turn at 6m
      - series: 'aionbd_shard_turn_lateness_seconds{job="aionbd", instance="a", shard="0"}'
        values: '0.08x40'
      - series: 'aionbd_shard_turn_lateness_seconds{job="aionbd", instance="a", shard="1"}'
        values: '0.007x40'
      - series: 'aionbd_shard_turn_lateness_seconds{job="aionbd", instance="b", shard="0"}'
        values: '0.05x40'
      - series: 'aionbd_shard_turn_lateness_seconds{job="aionbd", instance="c", shard="0"}'
        values: '0.08x5 0.007 0.08x40'
      # a: a watchdog signal every minute; b: one signal only
      - series: 'aionbd_shard_watchdog_signals_total{job="aionbd", instance="a"}'
        values: '0+1x40'
      - series: 'aionbd_shard_watchdog_signals_total{job="aionbd", instance="b"}'
        values: '0 0 0 1x40'
    alert_rule_test:
      - eval_time: 6m
        alertname: AionbdDown
        exp_alerts:
          - exp_labels: {severity: critical, job: aionbd, instance: a}
      - eval_time: 1m
        alertname: AionbdNotReady
        exp_alerts: []
      - eval_time: 5m
        alertname: AionbdNotReady
        exp_alerts:
          - exp_labels: {severity: critical, job: aionbd, instance: a}
      - eval_time: 5m
        alertname: AionbdStorageUnavailable
        exp_alerts:
          - exp_labels: {severity: critical, job: aionbd, instance: a}
      - eval_time: 5m
        alertname: AionbdWalDiskFull
        exp_alerts:
          - exp_labels: {severity: critical, job: aionbd, instance: a}
      - eval_time: 5m
        alertname: AionbdSnapshotFailing
        exp_alerts:
          - exp_labels: {severity: warning, job: aionbd, instance: a}
      - eval_time: 5m
        alertname: AionbdCredentialReloadFailed
        exp_alerts:
          - exp_labels: {severity: warning, job: aionbd, instance: a}
      - eval_time: 3m
        alertname: AionbdHighErrorRate
        exp_alerts: []
      - eval_time: 10m
        alertname: AionbdHighErrorRate
        exp_alerts:
          - exp_labels: {severity: critical, job: aionbd, instance: a}
      - eval_time: 8m
        alertname: AionbdLatencyP99High
        exp_alerts: []
      - eval_time: 15m
        alertname: AionbdLatencyP99High
        exp_alerts:
          - exp_labels: {severity: warning, job: aionbd, instance: a}
      - eval_time: 20m
        alertname: AionbdMemoryNearBudget
        exp_alerts:
          - exp_labels: {severity: warning, job: aionbd, instance: a}
      - eval_time: 20m
        alertname: AionbdIndexLagging
        exp_alerts: []
      - eval_time: 35m
        alertname: AionbdIndexLagging
        exp_alerts:
          - exp_labels: {severity: warning, job: aionbd, instance: a, collection: big}
      - eval_time: 8m
        alertname: AionbdWalFsyncSlow
        exp_alerts: []
      - eval_time: 15m
        alertname: AionbdWalFsyncSlow
        exp_alerts:
          - exp_labels: {severity: warning, job: aionbd, instance: a}
      - eval_time: 25m
        alertname: AionbdSnapshotBehind
        exp_alerts: []
      - eval_time: 35m
        alertname: AionbdSnapshotBehind
        exp_alerts:
          - exp_labels: {severity: warning, job: aionbd, instance: a, shard: "0"}
      - eval_time: 9m
        alertname: AionbdShardLate
        exp_alerts: []
      - eval_time: 15m
        alertname: AionbdShardLate
        exp_alerts:
          - exp_labels: {severity: warning, job: aionbd, instance: a, shard: "0"}
      - eval_time: 9m
        alertname: AionbdShardWatchdogFiring
        exp_alerts: []
      - eval_time: 15m
        alertname: AionbdShardWatchdogFiring
        exp_alerts:
          - exp_labels: {severity: warning, job: aionbd, instance: a}
EOF
  # every alert of the rules file needs a case above
  local name missing=0
  while read -r name; do
    grep -q "alertname: $name\$" "$work/alerts-test.yml" || { echo "no test case for $name"; missing=1; }
  done < <(sed -n 's/^ *- alert: *\([A-Za-z0-9_]*\).*/\1/p' "$rules")
  promtool test rules "$work/alerts-test.yml"
  [ "$missing" = 0 ]
}

# --- the server -----------------------------------------------------------------
key=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
base=

start_server() {
  mkdir -p "$work/data"
  AIONBD_AUTH_MODE=api_key AIONBD_AUTH_API_KEYS="ops:$key" AIONBD_AUTH_OPEN_HEALTH=true \
    AIONBD_MEMORY_BUDGET_BYTES=268435456 \
    nice -n 10 "$bin" --bind 127.0.0.1:0 --data-dir "$work/data" --shards 2 \
    >"$work/server.out" 2>"$work/server.err" &
  pid=$!
  local _
  for _ in $(seq 1 300); do
    base=$(sed -n 's|^aionbd listening on \(https\{0,1\}://[^ ]*\).*|\1|p' "$work/server.out")
    [ -n "$base" ] && break
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid"; echo "the server exited ($?) before listening:"; cat "$work/server.err"; pid=; return 1
    fi
    sleep 0.1
  done
  [ -n "$base" ] || { echo "no 'aionbd listening on' line after 30 s"; cat "$work/server.err"; return 1; }
  grep '^aionbd listening' "$work/server.out"
  echo "pid $pid, data directory $work/data, auth api_key (tenant ops), memory budget 256 MiB"
}

# call METHOD PATH EXPECTED-STATUS [BODY] [noauth]: one request, status checked
call() {
  local method=$1 path=$2 want=$3 body=${4:-} auth=${5:-auth} got
  local args=(-sS -o "$work/resp" -w '%{http_code}' -X "$method" --max-time 10)
  [ "$auth" = auth ] && args+=(-H "x-api-key: $key")
  [ -n "$body" ] && args+=(-H 'content-type: application/json' -d "$body")
  got=$(curl "${args[@]}" "$base$path") || got="curl-failed"
  printf '  %-6s %-34s -> %s (want %s) %s\n' "$method" "$path${5:+ (no credential)}" "$got" "$want" "$(head -c 100 "$work/resp")"
  [ "$got" = "$want" ]
}

traffic() {
  local rc=0
  call GET /ready 200 "" noauth || rc=1
  call POST /collections 200 '{"name":"obs","dimension":4}' || rc=1
  call PUT /collections/obs/points/1 200 '{"values":[1,2,3,4]}' || rc=1
  call PUT /collections/obs/points/2 200 '{"values":[4,3,2,1]}' || rc=1
  call PUT /collections/obs/points/3 200 '{"values":[1,0,0,1]}' || rc=1
  call POST /collections/obs/search 200 '{"query":[1,2,3,4],"limit":2}' || rc=1
  call GET /collections/missing 404 || rc=1
  call GET /collections 401 "" noauth || rc=1
  return "$rc"
}

scrape() {
  local code
  code=$(curl -sS -o "$work/metrics.prom" -w '%{http_code}' --max-time 10 -H "x-api-key: $key" \
    "$base/metrics/prometheus?format=strict")
  echo "GET /metrics/prometheus?format=strict -> $code, $(wc -l < "$work/metrics.prom") lines, $(grep -c '^# TYPE' "$work/metrics.prom") families"
  [ "$code" = 200 ]
}

promtool_metrics() {
  local out
  out=$(promtool check metrics < "$work/metrics.prom" 2>&1)
  local rc=$?
  [ -n "$out" ] && echo "$out"
  [ "$rc" = 0 ] && echo "promtool check metrics: no problems"
  return "$rc"
}

traffic_visible() {
  obs expect "$work/metrics.prom" \
    'aionbd_ready==1' 'aionbd_storage_available==1' 'aionbd_collections==1' 'aionbd_points==3' \
    'aionbd_persistence_wal_grouped_records_total>=4' 'aionbd_persistence_wal_fsyncs_total>=1' \
    'aionbd_search_queries_total>=1' \
    'aionbd_http_responses_total{status="2xx"}>=6' 'aionbd_http_responses_total{status="4xx"}>=2' \
    'aionbd_auth_failures_missing_total>=1' 'aionbd_http_request_duration_seconds_count>=8' \
    'aionbd_tenant_requests_total{tenant="ops"}>=6' 'aionbd_memory_budget_bytes==268435456'
}

stop_server() {
  echo "== stop the server (SIGTERM)"
  kill -TERM "$pid"
  local rc=0
  wait "$pid" || rc=$?
  pid=
  echo "   exit code $rc"
  record "stop the server" "$rc"
}

# --- run ----------------------------------------------------------------------
echo "check-observability: $repo"
step "tools" tools
step "dashboard JSON ($dashboard)" obs dashboard "$dashboard"
step "promtool check rules ($rules)" promtool_rules
step "alert annotations and runbook sections ($runbook)" obs rules "$rules" "$runbook"
step "promtool test rules (each alert fires on a failing series only)" test_rules

echo "== start the server ($bin)"
start_server > "$work/start.log" 2>&1
rc=$?
sed 's/^/   /' "$work/start.log"
record "start the server" "$rc"
if [ "$rc" = 0 ]; then
  step "traffic (a write, a search, a 404, a 401)" traffic
  step "scrape" scrape
  if [ -s "$work/metrics.prom" ]; then
    step "promtool check metrics (the scraped exposition)" promtool_metrics
    step "the traffic shows in the exposition" traffic_visible
    step "every metric the rules and the dashboard use is in the exposition" \
      obs names "$work/metrics.prom" "$rules" "$dashboard"
  fi
  stop_server
fi

echo
if [ "$failed" -gt 0 ]; then echo "failed: ${failures[*]}"; fi
echo "observability: $passed passed, $failed failed"
[ "$failed" = 0 ]
