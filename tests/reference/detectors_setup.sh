#!/usr/bin/env bash
# D-FINE's own code, the parity oracle of hgzoo.integrations.rtdetr: the PyPI package d-fine-project 1.0.0, downloaded
# with pip and extracted into .ref-detectors/ (ignored), never installed: its top-level packages are named `core`,
# `nn`, `data`, ... and would shadow others. The tests import its backbone files by path (tests/detector_ref.py).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dest=${HGZOO_DETECTOR_REF:-$here/../../.ref-detectors}
version=1.0.0
if [ -f "$dest/d_fine_project-$version/nn/backbone/hgnetv2.py" ]; then
  exit 0
fi
py=$here/../../.venv/bin/python
[ -x "$py" ] || py=python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$py" -m pip download -q --no-deps --only-binary=:all: "d-fine-project==$version" -d "$tmp"
mkdir -p "$dest"
"$py" -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" \
  "$tmp/d_fine_project-$version-py3-none-any.whl" "$tmp/x"
rm -rf "$dest/d_fine_project-$version"
mv "$tmp/x" "$dest/d_fine_project-$version"
echo "detector reference ready: $dest/d_fine_project-$version"
