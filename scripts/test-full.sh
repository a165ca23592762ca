#!/usr/bin/env bash
# The whole test suite on a fresh machine (README "Tests": npm run test:full). Installs what is
# missing (Debian packages, where apt-get can run; elsewhere it says what to install and
# stops), starts a throwaway PostgreSQL, and runs every test with CI=true, under which a
# missing service or tool fails its test instead of skipping it. .ci/run calls this too.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON_MODULES='import torch, onnx, numpy, PIL, regex, jinja2'
missing=()
command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# The console's browser tests drive Debian's chromium with playwright-core (no browser download).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# The GPU-check archive carries the Vulkan loader WebGPU needs.
[ -e /usr/lib/x86_64-linux-gnu/libvulkan.so.1 ] || [ -e /usr/lib64/libvulkan.so.1 ] || missing+=(libvulkan1)
# The Hugging Face import tests run the Python importer and reference with Debian's packages.
{ [ -x /usr/bin/python3 ] && /usr/bin/python3 -c "$PYTHON_MODULES" >/dev/null 2>&1; } ||
  missing+=(python3 python3-torch python3-onnx python3-numpy python3-pil python3-regex python3-jinja2)

if [ ${#missing[@]} -gt 0 ]; then
  sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo -n)
  if command -v apt-get >/dev/null 2>&1 && { [ ${#sudo[@]} = 0 ] || sudo -n true 2>/dev/null; }; then
    echo "test-full: installing Debian ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "test-full: missing ${missing[*]}. Install them first, e.g. on Debian 12:" >&2
    echo "  sudo apt-get install --no-install-recommends ${missing[*]}" >&2
    exit 2
  fi
fi

if [ ! -f node_modules/.package-lock.json ]; then
  # npm 10 runs every install script: these keep onnxruntime-node (CUDA binaries) and node-av
  # (an ffmpeg CLI) from downloading, which they need not (package.json allowScripts).
  ONNXRUNTIME_NODE_INSTALL=skip SKIP_FFMPEG=true npm ci --no-audit --no-fund
fi

# The Debian package starts a prometheus service where systemd runs; only promtool is needed.
command -v systemctl >/dev/null 2>&1 && systemctl stop prometheus >/dev/null 2>&1 || true

# A throwaway PostgreSQL cluster on a free loopback port for the store and replica tests.
started=""
for port in 55433 55434 55435 55436; do
  if started=$(bash test/support/start-postgres.sh "$port" 2>/dev/null); then break; fi
done
[ -n "$started" ] || { echo "test-full: PostgreSQL did not start" >&2; bash test/support/start-postgres.sh 55437; exit 1; }
read -r pg_url pg_dir <<<"$started"
trap 'bash test/support/start-postgres.sh --stop "$pg_dir"' EXIT
export ARMOR_TEST_DATABASE_URL="$pg_url" CI=true

echo "test-full: node $(node --version), npm $(npm --version), $(ffmpeg -version | head -n 1), $(psql --version), $(promtool --version 2>&1 | head -n 1), $(chromium --version 2>/dev/null), $(/usr/bin/python3 -c 'import torch, onnx; print("torch", torch.__version__, "onnx", onnx.__version__)')"
npm test
