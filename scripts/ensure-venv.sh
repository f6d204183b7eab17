#!/usr/bin/env bash
# Creates .venv and installs DeployMate into it: `ensure-venv.sh` (runtime) or `ensure-venv.sh dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
extras=""
[ "${1:-}" = "dev" ] && extras="[dev]"

if [ ! -x "$VENV/bin/python" ]; then
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    rm -rf "$VENV"
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
      DEBIAN_FRONTEND=noninteractive apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-pip >/dev/null
      python3 -m venv "$VENV"
    else
      echo "ensure-venv: python3 -m venv failed; install python3-venv (Debian) and retry" >&2
      exit 1
    fi
  fi
fi
stamp="$VENV/.installed"
if [ -n "$extras" ]; then
  stamp="$VENV/.installed-dev"
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e ".$extras"
  touch "$stamp"
fi
