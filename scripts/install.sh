#!/usr/bin/env bash
# Install napari-segany into a virtual environment (default: ./.venv, or $SEGANY_VENV).
#
#   bash scripts/install.sh            # the package and its command line
#   bash scripts/install.sh --dev      # + test tools, the napari GUI, and (as root on Debian)
#                                      #   the virtual display the GUI tests use
#   bash scripts/install.sh --gui      # + napari, magicgui and a Qt binding
#
# Why the steps are split:
#  * torch and torchvision come as the standard wheels from the package index. The CPU-only
#    torch wheel cannot load torchvision's compiled operators, which segment-anything and
#    sam2 need.
#  * sam2 is published as a source distribution. It is built against the torch installed in
#    step 1 (no build isolation, which would download torch a second time) and without its
#    optional CUDA extension (SAM2_BUILD_CUDA=0), which only speeds up hole filling.
# Running the script again only installs what is missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

extras=""
for arg in "$@"; do
  case "$arg" in
    --dev) extras="dev,gui" ;;
    --gui) extras="${extras:+$extras,}gui" ;;
    *) echo "usage: $0 [--dev] [--gui]" >&2; exit 2 ;;
  esac
done

venv="${SEGANY_VENV:-.venv}"
python="${PYTHON:-python3}"
if ! [ -x "$venv/bin/python" ] && ! "$python" -m venv "$venv" 2>/dev/null; then
  # Debian's python3 needs python3-venv for `python3 -m venv`.
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    rm -rf "$venv"; "$python" -m venv "$venv"
  else
    echo "cannot create a virtual environment: install python3-venv" >&2; exit 1
  fi
fi
py="$venv/bin/python"
pip() { "$py" -m pip "$@"; }
export PIP_DISABLE_PIP_VERSION_CHECK=1

if ! "$py" -c "import torch, torchvision.ops; torchvision.ops.nms" >/dev/null 2>&1; then
  echo "== installing torch and torchvision"
  pip install -q --upgrade pip setuptools wheel
  pip install -q "torch>=2.5.1" "torchvision>=0.20.1"
fi
if ! "$py" -c "import sam2.build_sam" >/dev/null 2>&1; then
  echo "== installing sam2 (built against the installed torch)"
  SAM2_BUILD_CUDA=0 pip install -q --no-build-isolation "sam2>=1.1"
fi
echo "== installing napari-segany${extras:+[$extras]}"
pip install -q -e ".${extras:+[$extras]}"
if [[ ",$extras," == *",gui,"* ]] && "$py" -c "import PyQt5" >/dev/null 2>&1; then
  # The gui extra is on PyQt6 now; qtpy picks PyQt5 first when both are installed.
  echo "== removing PyQt5 (napari deprecates it; the gui extra installs PyQt6)"
  pip uninstall -y -q PyQt5 PyQt5-Qt5 PyQt5-sip
fi

if [[ ",$extras," == *",dev,"* ]] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  # Qt 6's xcb plugin also needs libxcb-cursor0, and QtCore links GLib (libglib2.0-0).
  if ! command -v Xvfb >/dev/null || ! [ -e /usr/lib/x86_64-linux-gnu/dri ] \
      || ! /sbin/ldconfig -p | grep "libxcb-cursor.so.0 " >/dev/null \
      || ! /sbin/ldconfig -p | grep "libglib-2.0.so.0 " >/dev/null; then
    echo "== installing a virtual display (xvfb, Mesa) for the GUI tests"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      xvfb xauth libgl1 libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libxcb-icccm4 \
      libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 \
      libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 libdbus-1-3 libfontconfig1 libglib2.0-0 >/dev/null
  fi
fi
echo "== done: $venv/bin/napari-segany is ready"
