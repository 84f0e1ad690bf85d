# Shared by scripts/run.sh and scripts/test.sh (sourced, not executed).
# Creates .venv with Python 3.11 when missing and (re)installs the package in
# editable mode with the test extras whenever pyproject.toml changed since the
# last install; a stamp in .venv records what was installed. Both scripts
# install the same extras so they share one stamp and never reinstall for
# each other.

lifeline_python() {
  local py
  for py in "${LIFELINE_PYTHON:-}" python3.11 python3; do
    [ -n "$py" ] || continue
    if command -v "$py" >/dev/null 2>&1 &&
       "$py" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      echo "$py"
      return 0
    fi
  done
  echo "Python 3.11 is required (set LIFELINE_PYTHON to its path)" >&2
  return 1
}

ensure_venv() {
  local root stamp want have py
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  cd "$root"
  if [ ! -x .venv/bin/python ]; then
    py="$(lifeline_python)"
    echo "creating .venv with $py" >&2
    "$py" -m venv .venv
  fi
  stamp=.venv/.lifeline-install.sha256
  want="$(cat pyproject.toml | sha256sum | cut -d' ' -f1) $(.venv/bin/python -c 'import sys; print(sys.version.split()[0])')"
  have="$(cat "$stamp" 2>/dev/null || true)"
  if [ "$want" != "$have" ] || ! .venv/bin/python -c 'import lifeline' >/dev/null 2>&1; then
    echo "installing lifeline into .venv (pyproject.toml changed or first run)" >&2
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
    echo "$want" > "$stamp"
  fi
}
