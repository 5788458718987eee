"""The training sweeps of the elliptic-pde-2d scale benchmark (benchmarks/elliptic_2d_scale.py, parts
`depth`, `depth-label-free`, `rank`): GEOs trained on the copied data of a supervised run (or label-free),
each scored on its 60 test instances; finished runs of the same settings are reused."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from convexop import api
from convexop.bench.cases import train_case_model
from convexop.bench.sweeps import errors_of
from convexop.data import Dataset, read_dataset, write_dataset
from convexop.families import get_family
from convexop.training.trainer import TrainingDiverged

FAMILY = "elliptic-pde-2d"


def mean_error(family, x: torch.Tensor, target_values: torch.Tensor) -> torch.Tensor:
    """(n,) MSE over the 64 x 64 points of the decoded coefficients x (n, R) against values (n, 4096)."""
    return family.error(family.decode(x.double()), target_values)


def test_set(run: Path, family) -> Dataset:
    return read_dataset(run / "test.h5", family)


def family_of(order: int):
    return get_family(FAMILY, rank=order * order)


# ----- depth and rank sweeps --------------------------------------------------------------------
def prepare_run_folder(source: Path, folder: Path, family) -> None:
    """Copy the run's train.h5 / test.h5 into `folder`, relabelled with the family configuration of
    `family` (the targets are finite-difference solutions on the 64 x 64 points: they do not depend
    on the basis, so every rank reuses them)."""
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        target = folder / f"{split}.h5"
        if target.is_file():
            continue
        data = read_dataset(source / f"{split}.h5")
        attrs = dict(data.attrs)
        if "family_config" in attrs:
            attrs["family_config"] = json.dumps(family.family_config())
        if attrs.get("family_config") == data.attrs.get("family_config"):
            shutil.copyfile(source / f"{split}.h5", target)
        else:
            write_dataset(target, Dataset(data.params, data.targets, data.points, attrs))


def train_point(args, label: str, order: int, settings: dict[str, Any]) -> dict[str, Any]:
    """Train one GEO of the sweep (or reuse a finished run of the same settings in its folder, unless
    --retrain) and score it on the run's test instances."""
    family = family_of(order)
    folder = Path(args.work) / label
    prepare_run_folder(Path(args.run), folder, family)
    settings = {"rank": order * order, "steps": args.steps, "batch_size": args.batch, **settings}
    if args.retrain or not finished(folder, settings):
        try:
            train_case_model(folder, FAMILY, "geo", settings)
        except TrainingDiverged as error:
            nan = float("nan")
            return {"settings": settings, "diverged": str(error), "seconds": nan, "parameters": None,
                    "rollbacks": None, "optimum": nan, "reference": nan, "floor": nan}
    model = api.load(folder, family)
    model.eval()
    model.set_inference(start="zero")
    data = read_dataset(folder / "test.h5", family)
    errors = errors_of(model, data.params, data.targets)
    state = json.loads((folder / "checkpoint_last.json").read_text())
    seconds = float(state["history"][-1]["seconds"]) if state.get("history") else float("nan")
    return {"settings": settings, "seconds": seconds, "parameters": model.parameter_count(),
            "rollbacks": state.get("rollbacks"), **errors}


def finished(folder: Path, settings: dict[str, Any]) -> bool:
    """A finished run in `folder` whose configuration has these settings."""
    try:
        config = json.loads((folder / "config.json").read_text())
        state = json.loads((folder / "checkpoint_last.json").read_text())
    except (OSError, ValueError):
        return False
    training, model = config["training"], config["model_kwargs"]
    return (state.get("step") == settings["steps"] == training["steps"]
            and training["batch_size"] == settings["batch_size"]
            and config["family_config"].get("rank") == settings["rank"]
            and all(model.get(k) == settings[k] for k in ("depth", "width"))
            and training.get("loss") == settings.get("loss", training.get("loss"))
            and (folder / "model.safetensors").is_file())


def depth(args) -> dict[str, Any]:
    points = []
    for layers in args.depths:
        points.append({"depth": layers, **train_point(args, f"depth-L{layers}", 6,
                                                       {"depth": layers, "width": 72})})
    return {"setting": f"r = 6 (R = 36), M = 72, forward-backward init, relative queries, lr 3e-4 cosine, "
                       f"{args.steps} steps of {args.batch} of the run's 240 training instances each; "
                       f"60 test instances, zero start", "points": points}


def depth_label_free(args) -> dict[str, Any]:
    """The depth sweep trained label-free (the Galerkin objective at fresh draws of the training law,
    no training references): the test error is then not bounded below by over-fitting 240 instances."""
    points = []
    for layers in args.depths:
        points.append({"depth": layers, **train_point(args, f"depth-objective-L{layers}", 6,
                                                       {"depth": layers, "width": 72, "loss": "objective"})})
    return {"setting": f"r = 6 (R = 36), M = 72, forward-backward init, relative queries, lr 3e-4 cosine, "
                       f"label-free: {args.steps} steps of {args.batch} fresh draws each; the same 60 test "
                       f"instances, zero start", "points": points}


def rank(args) -> dict[str, Any]:
    run = Path(args.run)
    data = test_set(run, get_family(FAMILY))
    target = torch.as_tensor(data.targets, dtype=torch.float64)
    floors = []
    for order in args.floor_orders:
        family = family_of(order)
        floor = float(family.error(family.decode(family.project(target)), target).mean())
        started = time.perf_counter()
        optimum = torch.as_tensor(family.in_basis_optimum(data.params))
        seconds = time.perf_counter() - started
        floors.append({"order": order, "rank": order * order, "floor": floor,
                       "optimum_vs_reference": float(mean_error(family, optimum, target).mean()),
                       "optimum_seconds_per_instance": seconds / len(data.params)})
    geo = []
    for order in args.geo_orders:
        geo.append({"order": order, "rank": order * order,
                    **train_point(args, f"rank-r{order}", order, {"depth": 10, "width": 2 * order * order})})
    return {"fit_max_order": args.geo_fit_max_order,
            "setting": f"basis floor and in-basis optimum: 60 test instances of the run; GEO: L = 10, M = 2R, "
                       f"forward-backward init, relative queries, lr 3e-4 cosine, {args.steps} steps of {args.batch} "
                       f"each on the run's data, scored on its 60 test instances (zero start)",
            "floor": floors, "geo": geo}
