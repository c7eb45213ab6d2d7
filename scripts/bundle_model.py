"""Copy a trained generator into the package as the shipped default model, with its training record.

Usage: python scripts/bundle_model.py runs/default/best.safetensors [--log runs/default/log.csv]
       [--hardware "2-core AMD EPYC VM, CPU only"] [--name default]

Writes extendgan_geo/weights/default.safetensors (generator tensors only) and default.json (the metadata, plus
"training": epochs, wall time and hardware from the run's log).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform

from extendgan_geo.model.checkpoint import read_checkpoint, save_checkpoint

WEIGHTS = os.path.join(os.path.dirname(__file__), "..", "extendgan_geo", "weights")


def main() -> None:
    """Bundle the checkpoint given on the command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--log", help="the run's log.csv (default: next to the checkpoint)")
    ap.add_argument("--hardware", default=f"{platform.machine()}, {os.cpu_count()} CPU cores, no GPU")
    ap.add_argument("--name", default="default")
    args = ap.parse_args()
    tensors, meta = read_checkpoint(args.checkpoint)
    tensors = {k: v for k, v in tensors.items() if k.startswith("generator.")}
    log = args.log or os.path.join(os.path.dirname(args.checkpoint), "log.csv")
    with open(log) as f:
        rows = list(csv.DictReader(f))
    meta["training"] = {
        "epochs_run": len(rows),
        "best_epoch": meta.get("epoch"),
        "wall_seconds": round(sum(float(r["seconds"]) for r in rows)),
        "samples_seen": int(rows[-1]["step"]) * int(meta["config"]["batch_size"]) if rows else 0,
        "hardware": args.hardware,
        "log": [{k: r[k] for k in ("epoch", "val_mae", "val_psnr", "match_mae", "match_psnr")} for r in rows],
    }
    # Paths inside the run folder mean nothing to users; keep the file names.
    meta["training_data"] = [os.path.basename(p) for p in meta.get("training_data", [])]
    meta["validation_data"] = [os.path.basename(p) for p in meta.get("validation_data", [])]
    meta["config"] = {**meta["config"], "resume": None}
    os.makedirs(WEIGHTS, exist_ok=True)
    out = os.path.join(WEIGHTS, f"{args.name}.safetensors")
    digest = save_checkpoint(out, tensors, meta)
    print(f"{os.path.relpath(out)}: {os.path.getsize(out) / 1e6:.2f} MB, sha256 {digest}")
    print(json.dumps(meta["training"] | {"log": f"{len(rows)} epochs"}, indent=1))


if __name__ == "__main__":
    main()
