#!/usr/bin/env bash
# Idempotent environment setup: .venv (Python 3.10, TFX stack) and .venv-bq (Python 3.13, emulator),
# plus the Debian packages the project uses. One line per step; the details of every step go to
# STATE_DIR/logs/setup.log, whose tail is shown when a step fails. MLPIPE_VERBOSE=1 shows everything.
# Each venv carries a stamp of the inputs it was built from; an unchanged stamp skips the work.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
STATE_DIR=${MLPIPE_STATE_DIR:-.mlpipe}
LOG=$STATE_DIR/logs/setup.log
mkdir -p "$(dirname "$LOG")"
: > "$LOG"

# step "what it does" command...: runs the command with its output in the log. The command runs as a
# background job, not in an `if`, so that `set -e` still stops it at its first failing line.
step() {
  local what=$1; shift
  local t0=$SECONDS
  printf 'setup: %s ... ' "$what"
  echo "==== $what: $*" >> "$LOG"
  ( "$@" ) >> "$LOG" 2>&1 &
  local pid=$!
  if [[ ${MLPIPE_VERBOSE:-0} == 1 ]]; then echo; tail -n 0 -f --pid="$pid" "$LOG" & fi
  if wait "$pid"; then
    [[ ${MLPIPE_VERBOSE:-0} == 1 ]] && printf 'setup: %s: ' "$what"
    echo "ok ($((SECONDS - t0)) s)"
    return 0
  fi
  echo "FAILED"
  echo "---- last lines of $LOG ----" >&2
  tail -n 30 "$LOG" >&2
  exit 1
}

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
    "$2" -m venv "$1"
  fi
  if ! "$1/bin/uv" --version 2>/dev/null | grep -q "$UV_VERSION"; then
    "$1/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
  fi
}

install_tfx_stack() {
  make_venv .venv "$1"
  .venv/bin/uv pip install --python .venv/bin/python -r requirements.lock
  # adanet's metadata pins absl<1, protobuf<4, ...; the shim in models/adanet_compat.py covers TF 2.15.
  .venv/bin/uv pip install --python .venv/bin/python --no-deps adanet==0.9.0
  .venv/bin/uv pip install --python .venv/bin/python --no-deps -e .
}

install_emulator() {
  make_venv .venv-bq "$1"
  .venv-bq/bin/uv pip install --python .venv-bq/bin/python -r requirements-bq.lock
  # DuckDB cannot download extensions offline: install them from the wheel packages, once.
  .venv-bq/bin/python -c '
from duckdb_extensions import import_extension
for name in ("icu", "ducklake", "spatial", "json", "parquet"):
    import_extension(name)
'
}

# The google-api-python-client 1.x the TFX stack pins bundles no discovery documents; take ml v1 from
# a 2.x wheel on PyPI, once, into the (gitignored) venv.
fetch_ml_v1_doc() {
  local tmp; tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
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
}

apt_install() {
  local sudo_=""
  [[ $(id -u) -ne 0 ]] && sudo_=sudo
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "$@"
}

# --- .venv: the TFX / TensorFlow stack -----------------------------------------------------------
want=$(stamp_of requirements.lock setup.py scripts/setup.sh)
if [[ $(cat .venv/.mlpipe-stamp 2>/dev/null) != "$want" ]]; then
  py310=$(find_python 3.10 PYTHON310)
  step "TFX stack into .venv (Python 3.10, uv, requirements.lock)" install_tfx_stack "$py310"
  echo "$want" > .venv/.mlpipe-stamp
fi

# --- .venv-bq: the local BigQuery emulator -------------------------------------------------------
want_bq=$(stamp_of requirements-bq.lock scripts/setup.sh)
if [[ $(cat .venv-bq/.mlpipe-stamp 2>/dev/null) != "$want_bq" ]]; then
  py313=$(find_python 3.13 PYTHON313)
  step "BigQuery emulator into .venv-bq (Python 3.13)" install_emulator "$py313"
  echo "$want_bq" > .venv-bq/.mlpipe-stamp
fi

# --- ml v1 discovery document (googleapiclient against `mlpipe serve`) ---------------------------
ML_V1_DOC=.venv/share/mlpipe/ml.v1.json
GAPI_WHEEL=google-api-python-client==2.150.0
if [[ ! -s $ML_V1_DOC ]]; then
  step "ml v1 discovery document from the $GAPI_WHEEL wheel" fetch_ml_v1_doc
fi

# --- Debian packages: Graphviz `dot` (lineage pictures) ------------------------------------------
if ! command -v dot >/dev/null 2>&1; then
  step "Debian packages: graphviz" apt_install graphviz
fi

# --- Debian packages: Chromium and a font (the console's real-browser tests and screenshots) ------
# Playwright drives this system browser (executable_path); it never downloads one of its own.
if ! command -v chromium >/dev/null 2>&1 || [[ ! -d /usr/share/fonts/truetype/dejavu ]]; then
  step "Debian packages: chromium, fonts-dejavu-core" apt_install chromium fonts-dejavu-core
fi

echo "setup: ready (details of this setup in $LOG)"
