#!/usr/bin/env bash
# Run every test. Builds the PaddleClas reference environment (.venv-ref, the parity oracle) once,
# then runs pytest with hgzoo's environment (.venv, made by the README's set-up command).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/reference/setup.sh
py=.venv/bin/python
[ -x "$py" ] || py=python3
exec "$py" -m pytest "$@"
