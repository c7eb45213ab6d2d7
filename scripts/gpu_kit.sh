#!/usr/bin/env bash
# Pack what an offline GPU machine needs to train the default model further, and the script it runs there.
#
# Usage: scripts/gpu_kit.sh [SETTINGS.toml]      (default configs/default_gpu_d.toml; run in the repository root)
#
# Writes .gpu/ (gitignored, about 57 MB): site.tar.xz, rasterio 1.4.4 and its small pure-Python dependencies as
# stripped CPython 3.12 manylinux wheels unpacked into a `site` folder (18 MB), and train/, the rasters the settings
# name (hr, val_hr, mask_files; about 39 MB). The machine must already have Python 3.12 with torch, numpy, scipy
# and click; nothing is downloaded there. Copy the repository with .gpu/ to it and run
#   bash scripts/gpu_train.sh INIT OUT SECONDS [train options]
# (see that script). PYTHON picks the local interpreter that downloads the wheels (default python3).
set -euo pipefail
settings=${1:-configs/default_gpu_d.toml}
py=${PYTHON:-python3}
[ -f "$settings" ] || { echo "no settings file $settings; expected a TOML under configs/" >&2; exit 2; }
[ -d data/train ] || { echo "no data/train; expected the corpus (python scripts/get_training_data.py)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rm -rf .gpu/train
mkdir -p .gpu/train
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 -d "$work/wheels" rasterio==1.4.4 affine attrs cligj click-plugins
"$py" -m pip install -q --no-deps --target "$work/site" --python-version 3.12 --only-binary=:all: \
    --platform manylinux_2_28_x86_64 "$work"/wheels/*.whl
# GDAL's bundled libraries carry debug symbols: stripping halves the upload.
find "$work/site" -name '*.so*' -exec strip --strip-unneeded {} \; 2>/dev/null || true
tar -cf - -C "$work" site | xz -9 > .gpu/site.tar.xz
"$py" - "$settings" <<'EOF'
import os, shutil, sys
try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib
cfg = tomllib.load(open(sys.argv[1], "rb"))["train"]
for path in [*cfg.get("hr", []), *cfg.get("val_hr", []), *cfg.get("mask_files", [])]:
    shutil.copy(os.path.realpath(path), os.path.join(".gpu/train", os.path.basename(path)))
EOF
du -sh .gpu/site.tar.xz .gpu/train
