#!/usr/bin/env bash
# Train the default model further on an offline GPU machine prepared with scripts/gpu_kit.sh.
#
# Usage, in the repository root on that machine (with .gpu/ copied along):
#   bash scripts/gpu_train.sh INIT OUT SECONDS [more `egan-fill train` options]
#   e.g. bash scripts/gpu_train.sh extendgan_geo/weights/default.safetensors "$OUT" 480
#
# Unpacks .gpu/site.tar.xz into /tmp, points data/train at .gpu/train when there is no data/train, then runs
# scripts/train_timed.sh with SETTINGS (default configs/default_gpu_d.toml: another cosine cycle of the last stage)
# from INIT for SECONDS in all, with WORKERS (default 14) loader processes and --compile. If that run fails before
# its first epoch (e.g. the compiler is missing), it runs again without --compile in the time left. OUT receives
# best.safetensors, best.json, log.csv, config.toml and env.log, and nothing else (lent machines may return only a
# few files).
# Environment: SETTINGS, WORKERS, DEVICE (default cuda), PYTHON (default python3), and train_timed.sh's EPOCHS, PROBE.
set -u
if [ $# -lt 3 ]; then
    echo "usage: $0 INIT OUT SECONDS [train options]; expected a starting checkpoint, an output folder and a budget" >&2
    exit 2
fi
init=$1 out=$2 budget=$3
shift 3
start=$(date +%s)
py=${PYTHON:-python3}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1
[ -f .gpu/site.tar.xz ] || { echo "no .gpu/site.tar.xz; expected the kit of scripts/gpu_kit.sh" >&2; exit 2; }
tar -xJf .gpu/site.tar.xz -C /tmp || exit 3
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
if [ ! -e data/train ]; then
    mkdir -p data && ln -s "$PWD/.gpu/train" data/train
fi
mkdir -p "$out"
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    echo "cpus: $(nproc --all)"
    "$py" -c "import torch, rasterio; print('torch', torch.__version__, 'rasterio', rasterio.__version__)"
} > "$out/env.log" 2>&1
run=/tmp/egan_gpu_run
for compile in --compile ""; do
    left=$((budget - ($(date +%s) - start)))
    if [ "$left" -lt 90 ]; then
        echo "only $left s left; not training again" >> "$out/env.log"
        break
    fi
    rm -rf "$run"
    echo "training for $left s ${compile:-without --compile}" >> "$out/env.log"
    # shellcheck disable=SC2086
    if PYTHON=$py bash scripts/train_timed.sh "${SETTINGS:-configs/default_gpu_d.toml}" "$run" "$left" \
        --init "$init" --workers "${WORKERS:-14}" --device "${DEVICE:-cuda}" -q $compile "$@" >> "$out/env.log" 2>&1; then
        break
    fi
    echo "train failed ${compile:-without --compile} after $(($(date +%s) - start)) s" >> "$out/env.log"
    if [ -s "$run/log.csv" ]; then  # it trained at least one epoch: keep its checkpoints, do not start over
        break
    fi
done
echo "done after $(($(date +%s) - start)) s" >> "$out/env.log"
for f in best.safetensors best.json log.csv config.toml; do
    [ -f "$run/$f" ] && cp "$run/$f" "$out/"
done
true
