#!/usr/bin/env bash
# Build the napari-segany image with podman from a local Debian base and smoke-test it:
# `napari-segany --help` and a random-weights `segment` inside the container.
#
#   bash scripts/container.sh            # base (debootstrap, once), build, test
#   SEGANY_IMAGE=name bash scripts/container.sh
#
# No container registry is reachable here, so the base is a debootstrap tree imported into
# podman (localhost/debian-base); elsewhere the Containerfile's default base
# (python:3.11-slim-bookworm) is used. podman runs with runc and explicit ulimits (this
# sandbox lacks CAP_SYS_RESOURCE and crun fails on its cgroups). torch comes from the
# default package index (TORCH_INDEX=""), as PyTorch's CPU index is not reachable here.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
image="${SEGANY_IMAGE:-localhost/napari-segany:test}"
base="${SEGANY_BASE:-localhost/debian-base}"
podman=(podman --runtime runc)
limits=(--ulimit nofile=1024:1024 --ulimit nproc=4096:4096)
t0=$(date +%s)
if ! "${podman[@]}" image exists "$base"; then
  if ! command -v debootstrap >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  fi
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null \
           || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  root=$(mktemp -d)
  echo "== debootstrap bookworm from $mirror"
  debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
  # the host's CA bundle (a TLS proxy's certificate, where there is one) for pip in the build
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    mkdir -p "$root/etc/ssl" && cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/host-ca-bundle.crt"
  fi
  tar -C "$root" -c . | "${podman[@]}" import - "$base" >/dev/null
  rm -rf "$root"
fi
t1=$(date +%s)
echo "== base ready in $((t1 - t0)) s; building $image"
cert=()
if "${podman[@]}" run --rm "${limits[@]}" "$base" test -f /etc/ssl/host-ca-bundle.crt; then
  cert=(--build-arg PIP_CERT=/etc/ssl/host-ca-bundle.crt)
fi
log=$(mktemp)
"${podman[@]}" build "${limits[@]}" --build-arg BASE="$base" --build-arg TORCH_INDEX= "${cert[@]}" \
  --build-arg JUPYTER="${SEGANY_JUPYTER:-1}" -t "$image" -f Containerfile . >"$log" 2>&1 \
  || { tail -40 "$log"; echo "(build log: $log)"; exit 1; }
rm -f "$log"
t2=$(date +%s)
echo "== built in $((t2 - t1)) s"
"${podman[@]}" run --rm "${limits[@]}" "$image" napari-segany --help | head -3
"${podman[@]}" run --rm "${limits[@]}" "$image" sh -c \
  'cd "$(mktemp -d)" &&
   python -c "import numpy, tifffile; tifffile.imwrite(\"x.tif\", (numpy.random.default_rng(0).random((64, 64)) * 255).astype(\"uint8\"))" &&
   napari-segany segment x.tif --model sam_tiny --random-weights --box 10,10,40,40 --out seg &&
   test -f seg/labels.zarr/zarr.json && echo "segment: ok" &&
   python -c "import distributed, napari_segany.distributed; print(\"dask\", distributed.__version__)"'
t3=$(date +%s)
echo "== ran in $((t3 - t2)) s; total $((t3 - t0)) s"
