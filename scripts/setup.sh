#!/usr/bin/env bash
# Idempotent environment setup: .venv (Python 3.10, TFX stack) and .venv-bq (Python 3.13, emulator).
# Each venv carries a stamp of the inputs it was built from; an unchanged stamp skips the work.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9

find_python() {  # $1 = major.minor, $2 = env var that may name it
  local want=$1 override=${!2:-} candidates=()
  [[ -n $override ]] && candidates+=("$override")
  if command -v pyenv >/dev/null 2>&1; then
    local root; root=$(pyenv root)
    for d in "$root"/versions/"$want".*; do [[ -x $d/bin/python ]] && candidates+=("$d/bin/python"); done
  fi
  command -v "python$want" >/dev/null 2>&1 && candidates+=("$(command -v "python$want")")
  for c in "${candidates[@]}"; do
    if [[ -x $c ]] && [[ $("$c" -c 'import sys; print("%d.%d" % sys.version_info[:2])') == "$want" ]]; then
      echo "$c"; return 0
    fi
  done
  echo "error: Python $want not found (looked in pyenv's versions and PATH). Install it, e.g." \
       "'pyenv install $want', or set $2=/path/to/python$want." >&2
  return 1
}

stamp_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

make_venv() {  # $1 = dir, $2 = python
  if [[ ! -x $1/bin/python ]]; then
    echo "creating $1 with $2"
    "$2" -m venv "$1"
  fi
  if ! "$1/bin/uv" --version 2>/dev/null | grep -q "$UV_VERSION"; then
    "$1/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
  fi
}

# --- .venv: the TFX / TensorFlow stack -----------------------------------------------------------
want=$(stamp_of requirements.lock setup.py scripts/setup.sh)
if [[ $(cat .venv/.mlpipe-stamp 2>/dev/null) != "$want" ]]; then
  py310=$(find_python 3.10 PYTHON310)
  make_venv .venv "$py310"
  echo "installing the locked TFX stack into .venv (uv)"
  .venv/bin/uv pip install --quiet --python .venv/bin/python -r requirements.lock
  # adanet's metadata pins absl<1, protobuf<4, ...; the shim in models/adanet_compat.py covers TF 2.15.
  .venv/bin/uv pip install --quiet --python .venv/bin/python --no-deps adanet==0.9.0
  .venv/bin/uv pip install --quiet --python .venv/bin/python --no-deps -e .
  echo "$want" > .venv/.mlpipe-stamp
else
  echo ".venv is up to date"
fi

# --- .venv-bq: the local BigQuery emulator -------------------------------------------------------
want_bq=$(stamp_of requirements-bq.lock scripts/setup.sh)
if [[ $(cat .venv-bq/.mlpipe-stamp 2>/dev/null) != "$want_bq" ]]; then
  py313=$(find_python 3.13 PYTHON313)
  make_venv .venv-bq "$py313"
  echo "installing the BigQuery emulator into .venv-bq (uv)"
  .venv-bq/bin/uv pip install --quiet --python .venv-bq/bin/python -r requirements-bq.lock
  # DuckDB cannot download extensions offline: install them from the wheel packages, once.
  .venv-bq/bin/python -c '
from duckdb_extensions import import_extension
for name in ("icu", "ducklake", "spatial", "json", "parquet"):
    import_extension(name)
'
  echo "$want_bq" > .venv-bq/.mlpipe-stamp
else
  echo ".venv-bq is up to date"
fi

# --- ml v1 discovery document (googleapiclient against `mlpipe serve`) ---------------------------
# The google-api-python-client 1.x the TFX stack pins bundles no discovery documents; take ml v1 from
# a 2.x wheel on PyPI, once, into the (gitignored) venv. Skipped when the file is already there.
ML_V1_DOC=.venv/share/mlpipe/ml.v1.json
GAPI_WHEEL=google-api-python-client==2.150.0
if [[ ! -s $ML_V1_DOC ]]; then
  echo "fetching the ml v1 discovery document from the $GAPI_WHEEL wheel"
  (
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    .venv/bin/python -m pip download --quiet --disable-pip-version-check --no-deps "$GAPI_WHEEL" -d "$tmp"
    mkdir -p "$(dirname "$ML_V1_DOC")"
    .venv/bin/python - "$tmp"/google_api_python_client-*.whl "$ML_V1_DOC.tmp" <<'PY'
import json, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as whl:
    doc = json.loads(whl.read("googleapiclient/discovery_cache/documents/ml.v1.json"))
assert doc["name"] == "ml" and doc["version"] == "v1", "unexpected discovery document"
with open(sys.argv[2], "w") as fh:
    json.dump(doc, fh)
PY
    mv "$ML_V1_DOC.tmp" "$ML_V1_DOC"
  )
else
  echo "ml v1 discovery document present"
fi

# --- Graphviz `dot`: the PNG/SVG pictures of `mlpipe lineage` -------------------------------------
# Debian's graphviz package (`--format dot` needs no program). Skipped when `dot` is already on PATH.
if ! command -v dot >/dev/null 2>&1; then
  echo "installing Graphviz (dot) from apt"
  sudo_=""
  [[ $(id -u) -ne 0 ]] && sudo_=sudo
  $sudo_ apt-get update -qq && $sudo_ apt-get install -y -qq graphviz
else
  echo "graphviz present"
fi

echo "setup done"
