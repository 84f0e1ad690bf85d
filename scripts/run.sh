#!/usr/bin/env bash
# Runs all of Lifeline on this machine (embedded broker, Redis, SQLite stores).
# Usage: scripts/run.sh [lifeline up options]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_venv.sh
source scripts/_venv.sh
ensure_venv
exec .venv/bin/lifeline up "$@"
