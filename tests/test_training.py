import csv
import json

import pytest
import torch
from safetensors.torch import load_file

from convexop.errors import InputError
from convexop.families import ToyBox
from convexop.training.config import resolve_config
from convexop.training.run import train_run

SMALL = {"steps": "30", "eval_every": "10", "checkpoint_every": "10", "n_instances": "200",
         "batch_size": "32", "depth": "4", "width": "6", "tensorboard": "false", "init": "scaled"}


def test_training_lowers_the_loss_and_writes_the_run(tmp_path):
    config = resolve_config(ToyBox, "geo", SMALL | {"steps": "150", "lr": "1e-2"})
    _, history = train_run(config, tmp_path)
    assert history[-1]["train_mse"] < 0.7 * history[0]["train_mse"]
    for name in ("config.json", "model.safetensors", "model.json", "history.csv", "train.h5", "test.h5",
                 "checkpoint_last.safetensors", "checkpoint_last.json"):
        assert (tmp_path / name).is_file(), name
    rows = list(csv.DictReader((tmp_path / "history.csv").open()))
    assert [int(r["step"]) for r in rows] == list(range(10, 151, 10))
    assert json.loads((tmp_path / "config.json").read_text())["model_kwargs"]["depth"] == 4


def test_resume_after_interruption_is_bit_identical(tmp_path):
    config = resolve_config(ToyBox, "geo", SMALL)
    straight = tmp_path / "straight"
    train_run(config, straight)

    interrupted = tmp_path / "interrupted"

    def stop_at_25(row):
        if row["step"] == 30:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(resolve_config(ToyBox, "geo", SMALL | {"checkpoint_every": "20"}), interrupted, callback=stop_at_25)
    assert json.loads((interrupted / "checkpoint_last.json").read_text())["step"] == 20
    train_run(None, interrupted, resume=True)
    a = load_file(str(straight / "checkpoint_last.safetensors"))
    b = load_file(str(interrupted / "checkpoint_last.safetensors"))
    for key in a:
        if key.startswith(("model.", "optimizer.")):
            assert torch.equal(a[key], b[key]), key


def test_unknown_and_bad_keys_are_refused():
    with pytest.raises(InputError, match="unknown key; valid keys: .*depth"):
        resolve_config(ToyBox, "geo", {"depht": "3"})
    with pytest.raises(InputError, match="lr"):
        resolve_config(ToyBox, "geo", {"lr": "-1"})
    with pytest.raises(InputError, match="steps"):
        resolve_config(ToyBox, "geo", {"steps": "many"})
    with pytest.raises(InputError, match="--model"):
        resolve_config(ToyBox, "transformer", {})
