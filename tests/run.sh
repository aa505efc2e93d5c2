#!/usr/bin/env bash
# Run every test (the full suite; tests/README.md). Builds the PaddleClas reference environment (.venv-ref, the
# parity oracle) once, then runs pytest with hgzoo's environment (.venv, made by the README's set-up command), one
# worker per core. The fast tier needs neither this script nor the reference: .venv/bin/python -m pytest -m "not slow"
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/reference/setup.sh
# D-FINE's backbone code, the oracle of tests/test_integrations_rtdetr.py (from PyPI; its tests skip without it).
bash tests/reference/detectors_setup.sh || echo "D-FINE reference not set up: tests/test_integrations_rtdetr.py will skip"
py=.venv/bin/python
[ -x "$py" ] || py=python3
# One worker per core (pytest-xdist), each file's tests on one worker (module fixtures are made once);
# HGZOO_TEST_WORKERS=0 runs everything in this process.
exec "$py" -m pytest -n "${HGZOO_TEST_WORKERS:-auto}" --dist loadfile "$@"
