"""Label-free training (loss=objective): the program's own objective at the model's answers to fresh
draws, no reference solve for training; refused for supervised families."""

import json

import numpy as np
import pytest
import torch

from convexop.cli import main
from convexop.errors import InputError
from convexop.families import get_family
from convexop.models.base import from_checkpoint
from convexop.training.config import resolve_config
from convexop.training.run import train_run

SMALL = {"steps": "150", "eval_every": "50", "n_instances": "200", "test_fraction": "0.5", "depth": "6",
         "width": "4", "init": "forward-backward", "step": "0.2", "tensorboard": "false", "batch_size": "64"}


def _objective_gap(model, theta):
    family = model.family
    t = torch.as_tensor(theta)
    model.set_inference(start="zero")
    with torch.no_grad():
        x = family.finalise(model.coefficients(t.float()))
    best = torch.as_tensor(family.in_basis_optimum(theta))
    return (family.objective(x, t) - family.objective(best, t)).mean().item()


def test_objective_loss_trains_without_labels_and_lowers_the_gap(tmp_path, monkeypatch):
    family = get_family("toy-box")
    calls = []
    original = type(family).reference

    def counting(self, theta, progress=None):
        calls.append(len(theta))
        return original(self, theta, progress)

    monkeypatch.setattr(type(family), "reference", counting)
    theta = family.sample(200, np.random.default_rng(99))
    untrained = resolve_config(type(family), "geo", SMALL | {"steps": "1", "loss": "objective"})
    model0, _ = train_run(untrained, tmp_path / "zero")
    calls.clear()
    config = resolve_config(type(family), "geo", SMALL | {"loss": "objective"})
    model, history = train_run(config, tmp_path / "run")
    assert calls == [100]  # only the test set is solved: no reference for training instances
    assert not (tmp_path / "run" / "train.h5").exists() and (tmp_path / "run" / "test.h5").exists()
    assert _objective_gap(model, theta) < 0.5 * _objective_gap(model0, theta)
    assert history[-1]["test_mse"] < history[0]["test_mse"]
    # the run resumes, evaluates and answers like any other
    assert main(["evaluate", str(tmp_path / "run")]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test"]["certificate"]["residual"]["median"] < 1.0
    assert from_checkpoint(tmp_path / "run").family.name == "toy-box"


def test_objective_loss_refused_for_supervised_families(tmp_path):
    config = resolve_config(type(get_family("heat-pde")), "geo", {"loss": "objective", "steps": "2"})
    with pytest.raises(InputError, match="loss.*supervised"):
        train_run(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_label_noise_perturbs_only_the_training_targets_in_memory(tmp_path):
    import h5py

    from convexop.training.run import Split, with_label_noise

    targets = torch.randn(50, 20, generator=torch.Generator().manual_seed(0))
    split = Split(torch.zeros(50, 1), targets)
    noisy = with_label_noise(split, 0.1, seed=3)
    rms = float(targets.pow(2).mean().sqrt())
    ratio = float((noisy.targets - targets).pow(2).mean().sqrt()) / rms
    assert 0.09 < ratio < 0.11 and torch.equal(noisy.targets, with_label_noise(split, 0.1, seed=3).targets)
    config = resolve_config(type(get_family("toy-box")), "geo", SMALL | {"label_noise": "0.1", "steps": "5"})
    _, history = train_run(config, tmp_path / "run")
    clean = resolve_config(type(get_family("toy-box")), "geo", SMALL | {"steps": "5"})
    _, reference = train_run(clean, tmp_path / "clean")
    with h5py.File(tmp_path / "run" / "train.h5") as a, h5py.File(tmp_path / "clean" / "train.h5") as b:
        assert np.array_equal(a["targets"][()], b["targets"][()])  # the data set on disk stays clean
    assert history[-1]["train_mse"] != reference[-1]["train_mse"]  # the model was fitted to other targets
    with pytest.raises(InputError, match="label_noise"):
        resolve_config(type(get_family("toy-box")), "geo", {"label_noise": "-1"})
