"""GEO, FNO (2-D) and DeepONet side by side on elliptic-pde-2d, on one shared data set.

    python benchmarks/elliptic_2d_models.py --data RUN_DIR [--models geo,fno,deeponet] [--set MODEL:KEY=VALUE ...]

Each model trains with the family's defaults for it (`convexop train elliptic-pde-2d --model M
--show-config` prints them; `--set fno:steps=300` overrides one) on RUN_DIR/train.h5 and test.h5
(copied into a scratch run folder; no reference is solved), then its best checkpoint is scored as
`convexop evaluate` scores it: test MSE against the finite-difference reference and relative L2
(means over the test instances), the training seconds the trainer records, and the inference time
per instance of `values` on the whole test set at once (batch 60 for the default data; the median
of 5 timed calls after one warm-up, no gradients, one thread). Without `--data` the data set of the
family's default settings is generated once (reference solves, ~0.5 s per instance) and shared.
The GEO's family default is label-free (it then ignores train.h5 and draws fresh instances);
`--set geo:loss=mse` trains it on the shared data like the others.

Writes benchmarks/results/elliptic-2d-models.json and RESULTS-elliptic-2d-models.md. With
`--models`, only those rows are (re)measured and the others kept from an existing JSON of the same
data set (matched by the sha256 of the two files), so that each model may run in its own process;
`--models ""` measures nothing and rewrites the report (with `--note`, a sentence on the conditions).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from convexop.data import read_dataset
from convexop.evaluation.metrics import evaluate_model
from convexop.families import FAMILIES
from convexop.models import from_checkpoint
from convexop.training.config import resolve_config
from convexop.training.run import prepare_data, train_run

FAMILY = "elliptic-pde-2d"
MODELS = ("geo", "fno", "deeponet")
RESULTS = Path(__file__).resolve().parent / "results"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def inference_seconds(model, theta: torch.Tensor, repeats: int = 5) -> float:
    """Median wall time of one `values` call on the whole batch, no gradients."""
    model.eval()
    times = []
    with torch.no_grad():
        model.values(theta)
        for _ in range(repeats):
            started = time.perf_counter()
            model.values(theta)
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(name: str, overrides: dict[str, str], data: Path, scratch: Path) -> dict:
    run_dir = scratch / name
    run_dir.mkdir(parents=True)
    for split in ("train.h5", "test.h5"):
        shutil.copyfile(data / split, run_dir / split)
    config = resolve_config(FAMILIES[FAMILY], name, {"tensorboard": "false"} | overrides)
    started = time.perf_counter()
    trained, history = train_run(config, run_dir)
    wall = time.perf_counter() - started
    model = from_checkpoint(run_dir, family=trained.family)  # the best checkpoint, as `evaluate` scores
    metrics = evaluate_model(model, run_dir)
    test = read_dataset(run_dir / "test.h5", model.family)
    torch.manual_seed(0)
    seconds = inference_seconds(model, torch.as_tensor(test.params, dtype=torch.float32))
    return {"model": name, "parameters": model.parameter_count(),
            "model_kwargs": config.model_kwargs, "training": dataclasses.asdict(config.training),
            "training_seconds": metrics.get("training_seconds"), "wall_seconds": wall,
            "test_mse": metrics["test"]["mse"]["mean"], "test_mse_median": metrics["test"]["mse"]["median"],
            "test_relative_l2": metrics["test"]["relative_l2"]["mean"],
            "train_mse": metrics["train"]["mse"]["mean"],
            "basis_floor_test_mse": metrics["test"]["best_approximation_mse"],
            "inference_batch": len(test.params), "inference_seconds_per_instance": seconds / len(test.params),
            "history_last": history[-1] if history else None}


def table(record: dict) -> str:
    data = record["data"]
    intro = (f"Data: {data['n_train']} training / {data['n_test']} test instances (`{data['source']}`), targets "
             "the finite-difference reference on the 64 x 64 grid; basis floor of the GEO's r = 6 basis on the test "
             f"set: {record['basis_floor_test_mse']:.2e} (MSE). One thread, {record['machine']}, torch "
             f"{record['torch']}. Produced by `python benchmarks/elliptic_2d_models.py --data DIR`.")
    header = ("| model | parameters | training seconds | test MSE vs reference | relative L2 | "
              f"inference per instance (batch {data['n_test']}) | settings |")
    if record.get("note"):
        intro += " " + record["note"]
    lines = [f"# {FAMILY}: GEO, FNO (2-D) and DeepONet on one data set", "", intro, "", header,
             "|---|---|---|---|---|---|---|"]
    for row in record["rows"]:
        kwargs = ", ".join(f"{k}={v}" for k, v in row["model_kwargs"].items()
                           if k in ("width", "depth", "modes", "activation", "basis_size", "padding", "init"))
        t = row["training"]
        settings = f"{kwargs}; {t['steps']} steps, batch {t['batch_size']}, lr {t['lr']:g} {t['schedule']}"
        lines.append(f"| {row['model']} | {row['parameters']:,} | {row['training_seconds']:.0f} | "
                     f"{row['test_mse']:.2e} | {100 * row['test_relative_l2']:.2f}% | "
                     f"{1e3 * row['inference_seconds_per_instance']:.3f} ms | {settings} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="a folder with train.h5 and test.h5 of elliptic-pde-2d (reused as is)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of geo,fno,deeponet")
    parser.add_argument("--set", action="append", default=[], metavar="MODEL:KEY=VALUE",
                        help="override one setting of one model (repeatable)")
    parser.add_argument("--results", default=str(RESULTS), help="folder of the JSON and markdown files")
    parser.add_argument("--note", help="a sentence for the report (conditions of the measurement); kept when absent")
    args = parser.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"--models: unknown {', '.join(unknown)}; choose among {', '.join(MODELS)}")
    overrides: dict[str, dict[str, str]] = {m: {} for m in MODELS}
    for item in args.set:
        target, _, pair = item.partition(":")
        key, equals, value = pair.partition("=")
        if target not in MODELS or not equals or not key:
            parser.error(f"--set {item!r}: expected MODEL:KEY=VALUE with MODEL in {', '.join(MODELS)}")
        overrides[target][key] = value
    torch.set_num_threads(1)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    json_path, md_path = results / "elliptic-2d-models.json", results / "RESULTS-elliptic-2d-models.md"
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        if args.data:
            data = Path(args.data)
            missing = [s for s in ("train.h5", "test.h5") if not (data / s).is_file()]
            if missing:
                parser.error(f"--data {data}: missing {', '.join(missing)}")
        else:
            data = scratch / "data"
            data.mkdir()
            config = resolve_config(FAMILIES[FAMILY], "geo", {})
            family = FAMILIES[FAMILY](**config.family_config)
            prepare_data(family, config, data)
        family = FAMILIES[FAMILY](**resolve_config(FAMILIES[FAMILY], "geo", {}).family_config)
        train, test = (read_dataset(data / s, family) for s in ("train.h5", "test.h5"))
        source = {"source": str(data.resolve()) if args.data else "generated (family defaults)",
                  "n_train": len(train.params), "n_test": len(test.params),
                  "sha256": {s: digest(data / s) for s in ("train.h5", "test.h5")}}
        old = json.loads(json_path.read_text()) if json_path.is_file() else None
        kept, note = {}, args.note if args.note is not None else (old or {}).get("note")
        if old is not None and old.get("data", {}).get("sha256") == source["sha256"]:
            kept = {row["model"]: row for row in old["rows"] if row["model"] not in models}
        rows = dict(kept)
        for name in models:
            rows[name] = measure(name, overrides[name], data, scratch)
            print(f"{name}: test MSE {rows[name]['test_mse']:.3e}, relative L2 "
                  f"{100 * rows[name]['test_relative_l2']:.2f}%, {rows[name]['training_seconds']:.0f} s", flush=True)
    ordered = [rows[m] for m in MODELS if m in rows]
    floor = next((r["basis_floor_test_mse"] for r in ordered), float("nan"))
    record = {"family": FAMILY, "data": source, "basis_floor_test_mse": floor, "machine": platform.processor()
              or platform.machine(), "torch": torch.__version__, "threads": 1, "note": note, "rows": ordered}
    json_path.write_text(json.dumps(record, indent=2) + "\n")
    md_path.write_text(table(record))


if __name__ == "__main__":
    main()
