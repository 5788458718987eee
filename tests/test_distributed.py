"""Scale-out: data-parallel training under torchrun (2 CPU processes, gloo) equals one process on
the same global batch; sharded generation merges into the unsharded data set."""

import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from convexop.cli import main
from convexop.errors import InputError
from convexop.families import ToyBox
from convexop.shards import merge_shards, parse_shard
from convexop.training.config import resolve_config
from convexop.training.run import train_run
from convexop.training.trainer import epoch_permutation

DDP = {"steps": "30", "eval_every": "10", "checkpoint_every": "10", "n_instances": "64", "batch_size": "16",
       "depth": "2", "width": "3", "tensorboard": "false"}
TOLERANCE = 1e-6  # absolute, on weights of size ~0.05 (float32; observed differences ~1e-8)




def test_every_process_draws_the_same_global_batches():
    a, b = epoch_permutation(51, seed=3, epoch=4), epoch_permutation(51, seed=3, epoch=4)
    assert torch.equal(a, b) and sorted(a.tolist()) == list(range(51))
    assert not torch.equal(a, epoch_permutation(51, seed=3, epoch=5))
    assert not torch.equal(a, epoch_permutation(51, seed=4, epoch=4))
    batch = a[:16]
    assert torch.equal(torch.cat(batch.tensor_split(2)), batch)  # the slices of 2 processes cover it


@pytest.mark.slow
def test_torchrun_two_processes_equal_one_process(tmp_path):
    ddp = tmp_path / "ddp"
    argv = ["train", "toy-box", "--out", str(ddp)] + [a for k, v in DDP.items() for a in ("--set", f"{k}={v}")]
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "-m", "convexop", *argv], env=os.environ | {"OMP_NUM_THREADS": "1"},
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "on 2 processes" in result.stdout and result.stdout.count("trained geo") == 1  # rank 0 reports
    single = tmp_path / "single"
    single.mkdir()
    for name in ("train.h5", "test.h5"):  # the same data set, written once by rank 0
        shutil.copy(ddp / name, single / name)
    train_run(resolve_config(ToyBox, "geo", DDP), single)
    a = load_file(str(ddp / "checkpoint_last.safetensors"))
    b = load_file(str(single / "checkpoint_last.safetensors"))
    worst = 0.0
    for key in a:
        if key.startswith(("model.", "optimizer.")):
            difference = (a[key].double() - b[key].double()).abs().max().item()
            worst = max(worst, difference)
            assert difference <= TOLERANCE, (key, difference)
    print(f"\nDDP vs one process: largest weight or optimiser-state difference {worst:.2e}")
    rows_ddp = (ddp / "history.csv").read_text().splitlines()
    rows_single = (single / "history.csv").read_text().splitlines()
    assert len(rows_ddp) == len(rows_single) == 4
    for row_ddp, row_single in zip(rows_ddp[1:], rows_single[1:]):
        values_ddp = np.array(row_ddp.split(",")[:6], dtype=float)
        values_single = np.array(row_single.split(",")[:6], dtype=float)
        np.testing.assert_allclose(values_ddp, values_single, rtol=1e-5)
    assert json.loads((ddp / "checkpoint_last.json").read_text())["step"] == 30
    assert sorted(p.name for p in ddp.iterdir()) == sorted(p.name for p in single.iterdir())


def test_shards_merge_into_the_unsharded_data_set(tmp_path, capsys):
    def generate(*extra):
        assert main(["generate", "toy-box", "--n", "30", "--seed", "5", *extra]) == 0, capsys.readouterr().err

    generate("--out", str(tmp_path / "full.h5"))
    for index in (2, 0, 1):  # any order, e.g. a job array
        generate("--shard", f"{index}/3", "--out", str(tmp_path / f"part{index}.h5"))
    parts = [str(tmp_path / f"part{i}.h5") for i in (1, 2, 0)]
    assert main(["merge", str(tmp_path / "merged.h5"), *parts]) == 0
    with h5py.File(tmp_path / "full.h5") as full, h5py.File(tmp_path / "merged.h5") as merged:
        for name in ("params", "points"):
            assert np.array_equal(full[name][()], merged[name][()]), name
        # the reference solves each instance independently; batched linear algebra may round the last
        # bit differently with the batch's composition, so targets agree to round-off
        assert np.allclose(full["targets"][()], merged["targets"][()], rtol=0, atol=1e-12)
        attrs_full = {k: v for k, v in full.attrs.items() if k not in ("created", "sha256")}
        attrs_merged = {k: v for k, v in merged.attrs.items() if k not in ("created", "sha256")}
        assert list(attrs_full) == list(attrs_merged)
        assert all(np.all(attrs_full[k] == attrs_merged[k]) for k in attrs_full)
    with h5py.File(tmp_path / "part1.h5") as part:
        assert len(part["params"]) == 10 and part.attrs["shard_offset"] == 10
    capsys.readouterr()
    # refusals, one line each, nothing written
    generate("--shard", "1/3", "--seed", "6", "--out", str(tmp_path / "other-seed.h5"))
    generate("--shard", "0/2", "--out", str(tmp_path / "other-count.h5"))
    cases = [([parts[0], parts[1]], "missing shard"), ([parts[0], parts[0], parts[1], parts[2]], "given twice"),
             ([parts[2], str(tmp_path / "other-seed.h5"), parts[1]], "seed"),
             ([parts[2], str(tmp_path / "other-count.h5")], "shard_count"),
             ([str(tmp_path / "full.h5"), parts[1]], "not a shard")]
    for files, message in cases:
        capsys.readouterr()
        code = main(["merge", str(tmp_path / "bad.h5"), *files])
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (message, err)
        assert not (tmp_path / "bad.h5").exists()
    assert main(["merge", parts[0], *parts, "--force"]) == 2  # never overwrite a shard being merged
    with pytest.raises(InputError, match="--shard"):
        parse_shard("3/3")
    assert parse_shard(" 2 / 8 ") == (2, 8)
    assert len(merge_shards(parts).params) == 30
