#!/usr/bin/env bash
# Build the PaddleClas reference environment (the parity oracle) in .venv-ref, once.
# It is separate from hgzoo's environment: Paddle and PyTorch never share a process.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${HGZOO_REF_VENV:-$here/../../.venv-ref}
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import paddle, paddleclas, faiss" 2>/dev/null; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install -q -r "$here/requirements.txt"
"$venv/bin/pip" install -q --no-deps paddleclas
"$venv/bin/python" -c "import paddle, paddleclas; print('reference environment ready: paddle', paddle.__version__)"
