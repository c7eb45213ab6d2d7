#!/usr/bin/env bash
# Train within a time budget (a lent or rented GPU, a batch-queue slot): a two-epoch probe measures samples/s, then
# the run gets the epochs x samples_per_epoch that fill the budget, so its cosine schedule ends inside it.
#
# Usage: scripts/train_timed.sh SETTINGS.toml OUT_DIR SECONDS [more `egan-fill train` options]
#   e.g. scripts/train_timed.sh configs/default_gpu_b.toml runs/stage3c 480 --init runs/default_gpu_b/best.safetensors
#
# Environment: EPOCHS (default 12), PROBE (samples of the two probe epochs, default 8192), PYTHON (default python3),
# EGAN (the command, default `$PYTHON -m extendgan_geo.cli.main`). The settings' batch_size rounds the epoch size;
# --max-minutes guards the end.
# This is how stage 3 of the shipped model was sized (docs/model.md).
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 SETTINGS.toml OUT_DIR SECONDS [train options]; expected a settings file, a run folder and a budget" >&2
    exit 2
fi
settings=$1 out=$2 budget=$3
shift 3
py=${PYTHON:-python3}
egan=${EGAN:-$py -m extendgan_geo.cli.main}
epochs=${EPOCHS:-12}
start=$(date +%s)
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
# shellcheck disable=SC2086
# Two probe epochs: the second one's rate leaves out the one-offs (loader processes, --compile's compile).
$egan train --settings "$settings" --out "$probe" --epochs 2 --samples-per-epoch "$(( ${PROBE:-8192} / 2 ))" -q "$@"
read -r sps batch < <("$py" - "$probe/log.csv" "$probe/config.toml" <<'EOF'
import csv, sys
try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib
row = list(csv.DictReader(open(sys.argv[1])))[-1]
cfg = tomllib.load(open(sys.argv[2], "rb"))["train"]
print(float(row["samples_per_s"]), int(cfg["batch_size"]))
EOF
)
left=$((budget - ($(date +%s) - start)))
# 85 % of what is left: each epoch also validates and saves checkpoints, and the run starts its loader processes
# (and, with --compile, compiles again: torch's disk cache makes the second compile shorter) before its first step.
per_epoch=$("$py" -c "print(max($batch, int($sps * $left * 0.85 / $epochs / $batch) * $batch))")
minutes=$("$py" -c "print(max(0.5, round(($left - 45) / 60, 2)))")
echo "probe: $sps samples/s; $left s left -> $epochs epochs x $per_epoch samples (guard: --max-minutes $minutes)" >&2
# shellcheck disable=SC2086
$egan train --settings "$settings" --out "$out" --epochs "$epochs" --samples-per-epoch "$per_epoch" \
    --max-minutes "$minutes" "$@"
