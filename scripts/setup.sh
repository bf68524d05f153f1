#!/usr/bin/env bash
# Idempotent set-up for Mission Control Mesh on a fresh Debian machine with
# the Rust toolchain (rustup) installed. Safe to run any number of times.
set -euo pipefail
cd "$(dirname "$0")/.."

# The PyTorch venv (see below).
torch_version=2.13.0
cache_dir="${MC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mission-control-mesh}"
venv="$cache_dir/py-torch-$torch_version"

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# mc-sim sweep draws its plots with a TrueType font.
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need_apt+=(fonts-dejavu-core)
# Node.js and npm: the interoperability tests run js-libp2p and @automerge/automerge.
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if [ ! -x "$venv/bin/python" ] && ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
  need_apt+=(python3 python3-venv)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} with apt-get"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust with rustup first" >&2
  exit 1
fi
for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^${component}"; then
    rustup component add "$component"
  fi
done

# PyTorch 2.13.0 in a cache outside the repo, for libtorch (tch 0.26 wants
# exactly this version) and for the Python interoperability test. Two links
# in the repo root point at it: .venv (the venv) and .libtorch (its torch
# package, the LIBTORCH of .cargo/config.toml). Both are gitignored.
if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating the Python venv $venv"
  mkdir -p "$cache_dir"
  python3 -m venv "$venv"
fi
# Importing torch (not only reading its version) proves the install loads.
if ! "$venv/bin/python" -c "
import importlib.metadata as m, torch
assert torch.__version__.startswith('$torch_version')
for p in ('safetensors', 'numpy', 'scikit-learn', 'vega_datasets'): m.version(p)
" >/dev/null 2>&1; then
  echo "setup: installing torch==$torch_version safetensors numpy scikit-learn vega_datasets into $venv (downloads ~4.7 GB)"
  "$venv/bin/python" -m pip install --quiet "torch==$torch_version" safetensors numpy scikit-learn vega_datasets
fi
torch_dir=$("$venv/bin/python" -c 'import importlib.util; print(importlib.util.find_spec("torch").submodule_search_locations[0])')
for link in .venv .libtorch; do
  if [ -e "$link" ] && [ ! -L "$link" ]; then
    echo "setup: $link exists and is not a symbolic link; move it away and rerun" >&2
    exit 1
  fi
done
ln -sfn "$venv" .venv
ln -sfn "$torch_dir" .libtorch

# The JavaScript interoperability peers (npm ci from the committed lock files,
# only when a lock changed).
interop/js/install.sh
