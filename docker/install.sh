#!/usr/bin/env sh
# Install Runbook Bot from a source tree into a fresh virtual environment.
# The Dockerfile runs this; .ci/run runs it too, so the image's install steps cannot rot.
#   usage: docker/install.sh PREFIX [SOURCE_DIR]
set -eu
prefix="${1:?usage: install.sh PREFIX [SOURCE_DIR]}"
source_dir="${2:-$(cd "$(dirname "$0")/.." && pwd)}"
python3 -m venv "$prefix"
"$prefix/bin/python" -m pip install --quiet --no-cache-dir --upgrade pip
"$prefix/bin/python" -m pip install --quiet --no-cache-dir "$source_dir"
"$prefix/bin/runbook" --help >/dev/null
echo "installed runbook-bot into $prefix"
