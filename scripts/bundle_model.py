"""Copy a trained generator into the package as the shipped default model, with its training record.

Usage: python scripts/bundle_model.py runs/default_ft/best.safetensors [--log runs/default_ft/log.csv]
       [--stage-log runs/default/log.csv] [--stage-record stage.json] [--settings configs/default_ft.toml]
       [--hardware "2-core AMD EPYC VM, CPU only"] [--name default]

Writes extendgan_geo/weights/default.safetensors (generator tensors only) and default.json (the metadata, plus
"training": epochs, wall time and hardware from the run's log; with --stage-log, the earlier stages' logs too,
e.g. the run a fine-tune started from; with --stage-record, an earlier stage whose log.csv was not kept, as a JSON
object with "log_file", "epochs", "wall_seconds", "samples_seen" and a "note" saying where the figures come from).
Earlier stages are listed in the order given. With --settings, the recorded run folder and starting checkpoint are
those of the repository's settings file (a run on a lent machine had its own scratch paths).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform

from extendgan_geo.model.checkpoint import read_checkpoint, save_checkpoint
from extendgan_geo.training.config import tomllib

WEIGHTS = os.path.join(os.path.dirname(__file__), "..", "extendgan_geo", "weights")


def main() -> None:
    """Bundle the checkpoint given on the command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--log", help="the run's log.csv (default: next to the checkpoint)")
    ap.add_argument("--hardware", default=f"{platform.machine()}, {os.cpu_count()} CPU cores, no GPU")
    ap.add_argument("--name", default="default")
    ap.add_argument(
        "--stage-log",
        dest="stages",
        action="append",
        default=[],
        type=lambda p: ("log", p),
        help="log.csv of an earlier stage (repeatable, in training order)",
    )
    ap.add_argument(
        "--stage-record",
        dest="stages",
        action="append",
        type=lambda p: ("record", p),
        help="JSON summary of an earlier stage without a log.csv (repeatable, in training order) "
        "with keys log_file, epochs, wall_seconds (of the whole train process), samples_seen and note",
    )
    ap.add_argument("--settings", help="the run's settings TOML in the repository: its out and init are recorded")
    args = ap.parse_args()
    tensors, meta = read_checkpoint(args.checkpoint)
    tensors = {k: v for k, v in tensors.items() if k.startswith("generator.")}
    log = args.log or os.path.join(os.path.dirname(args.checkpoint), "log.csv")
    stages = [_stage(path) if kind == "log" else _record(path) for kind, path in args.stages] + [_stage(log)]
    rows = stages[-1].pop("rows")
    earlier = [{k: v for k, v in st.items() if k != "rows"} for st in stages[:-1]]
    meta["training"] = {
        "epochs_run": len(rows),
        "best_epoch": meta.get("epoch"),
        "wall_seconds": stages[-1]["wall_seconds"],
        "samples_seen": stages[-1]["samples_seen"],
        "hardware": args.hardware,
        "log": [{k: r[k] for k in ("epoch", "val_mae", "val_psnr", "match_mae", "match_psnr")} for r in rows],
        "earlier_stages": earlier,
        "total_wall_seconds": sum(st["wall_seconds"] for st in stages),
        "total_samples_seen": sum(st["samples_seen"] for st in stages),
    }
    # Paths inside the run folder mean nothing to users; keep the file names.
    meta["training_data"] = [os.path.basename(p) for p in meta.get("training_data", [])]
    meta["validation_data"] = [os.path.basename(p) for p in meta.get("validation_data", [])]
    meta["config"] = {**meta["config"], "resume": None}
    if args.settings:
        with open(args.settings, "rb") as f:
            train = tomllib.load(f)["train"]
        meta["config"].update({k: train[k] for k in ("out", "init") if k in train})
    os.makedirs(WEIGHTS, exist_ok=True)
    out = os.path.join(WEIGHTS, f"{args.name}.safetensors")
    digest = save_checkpoint(out, tensors, meta)
    print(f"{os.path.relpath(out)}: {os.path.getsize(out) / 1e6:.2f} MB, sha256 {digest}")
    print(json.dumps(meta["training"] | {"log": f"{len(rows)} epochs"}, indent=1))


def _record(path: str) -> dict:
    """An earlier stage summarised by hand in a JSON file (its log.csv was lost), checked for the needed keys."""
    with open(path) as f:
        record = json.load(f)
    missing = {"log_file", "epochs", "wall_seconds", "samples_seen", "note"} - set(record)
    if missing:
        raise SystemExit(f"{path}: missing keys {sorted(missing)}; expected a stage summary (see --help)")
    numbers = [k for k in ("epochs", "wall_seconds", "samples_seen") if not isinstance(record[k], int | float)]
    if numbers:
        raise SystemExit(f"{path}: {numbers} are not numbers; expected numbers, e.g. 12 epochs")
    return record


def _stage(log: str) -> dict:
    """Epochs, wall time and samples of one run from its log.csv (rows kept under "rows")."""
    with open(log) as f:
        rows = list(csv.DictReader(f))
    batch = [float(r["samples_per_s"]) * float(r["seconds"]) for r in rows]
    return {
        "log_file": os.path.basename(os.path.dirname(os.path.abspath(log))) + "/log.csv",
        "epochs": len(rows),
        "wall_seconds": round(sum(float(r["seconds"]) for r in rows)),
        "samples_seen": round(sum(batch)),
        "rows": rows,
    }


if __name__ == "__main__":
    main()
