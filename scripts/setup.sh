#!/usr/bin/env bash
# Idempotent setup on a fresh machine: system packages, .venv with the pinned Python packages,
# and -- only where SAPIEN cannot create a Vulkan renderer (no GPU) -- the software-Vulkan
# fallback: Mesa >= 24 lavapipe from bookworm-backports plus our layer built from vulkan/.
# Re-running it when everything is in place is a fast no-op.
#
#   bash scripts/setup.sh            # uses python3 (3.8-3.11); PYTHON=python3.10 to choose
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
BUILD="$ROOT/build/vulkan"
PYTHON=${PYTHON:-python3}
LAYER_NAME=VK_LAYER_MS2AGENT_drop_unsupported_extensions
LVP_ICD=/usr/share/vulkan/icd.d/lvp_icd.json

log() { echo "[setup] $*" >&2; }
die() { echo "[setup] ERROR: $*" >&2; exit 1; }

is_debian() { [ -f /etc/debian_version ] && command -v apt-get >/dev/null; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=0
apt_install() {  # apt_install [-t SUITE] PACKAGE...: installs only what is missing
    local target=() missing=()
    if [ "$1" = -t ]; then target=(-t "$2"); shift 2; fi
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ $apt_updated = 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
    log "apt-get install ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${target[@]}" "${missing[@]}" >/dev/null
}

manual_instructions() {
    die "$1
This script installs system packages only on Debian/Ubuntu. Install by hand:
  - Python 3.8-3.11 with the venv module, a C compiler (gcc) and the Vulkan loader (libvulkan1);
  - a Vulkan driver: your GPU's, or, without a GPU, Mesa >= 24 lavapipe plus the Vulkan headers
    (vulkan/vulkan.h, vk_layer.h) so this script can build the layer in vulkan/;
then re-run: bash scripts/setup.sh"
}

# --- 1. Base system packages -------------------------------------------------------------------
if is_debian; then
    apt_install libvulkan1 gcc
    "$PYTHON" -m venv --help >/dev/null 2>&1 || apt_install python3-venv
elif ! "$PYTHON" -c "import ctypes.util, sys; sys.exit(ctypes.util.find_library('vulkan') is None)"; then
    manual_instructions "The Vulkan loader (libvulkan.so.1) is missing."
fi
"$PYTHON" -c "import sys; sys.exit(not (3, 8) <= sys.version_info[:2] <= (3, 11))" \
    || die "$PYTHON is $("$PYTHON" --version 2>&1); SAPIEN 2.2.2 needs Python 3.8-3.11 (set PYTHON=...)."

# --- 2. Python environment (reinstalled only when pyproject.toml changes) ----------------------
[ -x "$VENV/bin/python" ] || { log "creating $VENV"; "$PYTHON" -m venv "$VENV"; }
stamp="$VENV/.ms2agent-installed"
want=$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "installing Python packages into $VENV (a few minutes the first time)"
    "$VENV/bin/pip" install -q --disable-pip-version-check -e "$ROOT[train,test,cluster]" 2>&1 \
        | grep -v "is neither a file nor a directory" >&2 || true
    "$VENV/bin/python" -c "import mani_skill2, sapien, torch, onnxruntime, typer, pytest, ray" \
        || die "Python packages failed to install (see pip's output above)."
    echo "$want" > "$stamp"
fi

# --- 3. Vulkan: use the system's if SAPIEN can render with it, else build the fallback ---------
# Render one frame as ManiSkill2 does (SAPIEN's renderer alone "succeeds" even with no device).
PROBE_RENDER="
import sapien.core as sapien
engine = sapien.Engine()
engine.set_renderer(sapien.SapienRenderer())
scene = engine.create_scene()
builder = scene.create_actor_builder()
builder.add_box_visual(half_size=[0.1, 0.1, 0.1])
builder.build_kinematic()
camera = scene.add_camera('probe', 32, 32, 1.0, 0.01, 10.0)
camera.set_local_pose(sapien.Pose([-1, 0, 0]))
scene.update_render()
camera.take_picture()
assert camera.get_float_texture('Position').shape == (32, 32, 4)
"
probe() {  # probe [env-json]: can SAPIEN create a renderer (with these loader variables)?
    local vars=()
    if [ -n "${1:-}" ]; then
        mapfile -t vars < <("$VENV/bin/python" -c \
            "import json,sys; [print(k + '=' + v) for k, v in json.load(open(sys.argv[1])).items()]" "$1")
    fi
    env -u VK_ICD_FILENAMES -u VK_LAYER_PATH -u VK_INSTANCE_LAYERS "${vars[@]}" \
        "$VENV/bin/python" -c "$PROBE_RENDER" >"$BUILD.probe.log" 2>&1 &
    wait $! 2>/dev/null  # a crash (no device) is an expected answer: keep bash quiet about it
}
mkdir -p "$(dirname "$BUILD")"

if [ -f "$BUILD/env.json" ] && probe "$BUILD/env.json"; then
    log "ready (software Vulkan: lavapipe + $LAYER_NAME)"
    exit 0
fi
if probe; then
    rm -rf "$BUILD"
    log "ready (system Vulkan driver)"
    exit 0
fi

log "no usable Vulkan device: setting up software Vulkan (Mesa lavapipe + compatibility layer)"
if is_debian; then
    mesa=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)
    if [ -z "$mesa" ] || dpkg --compare-versions "$mesa" lt 24; then
        . /etc/os-release
        if [ "${VERSION_CODENAME:-}" = bookworm ]; then
            src=/etc/apt/sources.list.d/bookworm-backports.sources
            if [ ! -f "$src" ]; then
                log "adding bookworm-backports (Mesa 25) to $src"
                printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
                    | as_root tee "$src" >/dev/null
                apt_updated=0
            fi
            if [ $apt_updated = 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
            log "apt-get install -t bookworm-backports mesa-vulkan-drivers"
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q -t bookworm-backports \
                mesa-vulkan-drivers >/dev/null
        else
            apt_install mesa-vulkan-drivers  # newer releases ship Mesa >= 24
        fi
    fi
    apt_install libvulkan-dev
fi
[ -f "$LVP_ICD" ] || manual_instructions "Mesa lavapipe ($LVP_ICD) is not installed."
[ -f /usr/include/vulkan/vk_layer.h ] || manual_instructions "The Vulkan headers are not installed."

mkdir -p "$BUILD"
gcc -shared -fPIC -O2 -Wall -Werror -fvisibility=hidden \
    -o "$BUILD/libdrop_unsupported_extensions.so" "$ROOT/vulkan/drop_unsupported_extensions.c"
sed "s|@LIBRARY_PATH@|$BUILD/libdrop_unsupported_extensions.so|" \
    "$ROOT/vulkan/drop_unsupported_extensions.json.in" > "$BUILD/drop_unsupported_extensions.json"
cat > "$BUILD/env.json.tmp" <<EOF
{"VK_ICD_FILENAMES": "$LVP_ICD", "VK_LAYER_PATH": "$BUILD", "VK_INSTANCE_LAYERS": "$LAYER_NAME"}
EOF
probe "$BUILD/env.json.tmp" || die "SAPIEN still cannot create a renderer on lavapipe; see $BUILD.probe.log"
mv "$BUILD/env.json.tmp" "$BUILD/env.json"
log "ready (software Vulkan: lavapipe + $LAYER_NAME)"
