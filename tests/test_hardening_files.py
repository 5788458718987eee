"""Hardening of what convexop reads back (issue 16, items 1, 2 and the lock of 5).

1. A family file runs only after its sha256 matched the record (a MARKER line appended to it never
   runs); recorded paths are taken relative to the run folder, never the working directory; a moved
   run finds its file beside it or through `--family FILE.py:NAME`; sibling imports work.
2. Checkpoint metadata is covered by the checkpoint's hash and every field is checked before use;
   model sizes and iteration counts are bounded before anything is allocated; weights files are
   size-checked and hashed in chunks.
3. One writer per run folder (train.lock); a run killed before its first checkpoint restarts.

Everything runs on tiny toy-box budgets through `convexop.cli.main`, as tests/test_reliability.py.
"""

import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import CLIPPED_FAMILY as FAMILY_FILE
from safetensors import safe_open
from safetensors.torch import load_file, save

from convexop.cli import main
from convexop.errors import InputError
from convexop.families import ToyBox
from convexop.models.base import from_checkpoint
from convexop.training.checkpoint import checkpoint_digest, tensors_digest
from convexop.training.config import resolve_config
from convexop.training.run import LOCK_NAME, train_run

TINY = {"steps": "20", "eval_every": "10", "checkpoint_every": "10", "n_instances": "40", "batch_size": "8",
        "depth": "2", "width": "3", "tensorboard": "false"}
TINY_ARGS = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]
FAMILY_ARGS = ["--set", "steps=10", "--set", "n_instances=20", "--set", "eval_every=5", "--set", "checkpoint_every=5",
               "--set", "depth=2", "--set", "tensorboard=false"]

INSTANCES = {"instances": [{"c": [0.9, -0.2, 0.1]}]}




def call(argv, capsys):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as stop:  # argparse
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def refused(code, err, *needles):
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)


def marker_line(marker: Path) -> str:
    return f"\nopen({str(marker)!r}, 'w').write('ran')\n"


# ----- fixtures ----------------------------------------------------------------------------------

def make_project(folder: Path) -> Path:
    """A folder with fam.py and run/ trained on fam.py:family (through the CLI)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "fam.py").write_text(FAMILY_FILE)
    (folder / "in.json").write_text(json.dumps(INSTANCES))
    torch.set_num_threads(1)
    code = main(["train", f"{folder / 'fam.py'}:family", "--out", str(folder / "run"), *FAMILY_ARGS])
    assert code == 0
    return folder


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("project"))


def copy_project(project: Path, target: Path) -> Path:
    shutil.copytree(project, target)
    return target


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A toy-box run stopped after its step-10 checkpoint (of 20 steps): resuming trains 10 more."""
    run_dir = tmp_path_factory.mktemp("hardening") / "run"
    torch.set_num_threads(1)

    def stop(row):
        if row["step"] == 20:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(resolve_config(ToyBox, "geo", TINY), run_dir, callback=stop)
    assert json.loads((run_dir / "checkpoint_last.json").read_text())["step"] == 10
    assert not (run_dir / LOCK_NAME).exists()  # released on the interrupt
    return run_dir


def copy_run(run_dir: Path, tmp_path: Path, name: str = "copy") -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / name))


# ----- 1. family files ---------------------------------------------------------------------------

def test_an_edited_family_file_is_refused_before_any_of_its_code_runs(tmp_path, monkeypatch, capsys):
    folder = make_project(tmp_path / "p")
    capsys.readouterr()  # the training's progress bar
    monkeypatch.chdir(folder)
    marker = tmp_path / "MARKER"
    with open(folder / "fam.py", "a") as stream:
        stream.write(marker_line(marker))
    for argv in (["solve", "run", "--instances", "in.json", "--out", "out.json"],
                 ["evaluate", "run", "--out", "metrics.json"],
                 ["train", "fam.py:family", "--out", "run", "--resume"]):
        code, _, err = call(argv, capsys)
        refused(code, err, "file changed", "was not run")
        assert not marker.exists(), argv  # the appended line never ran
    assert not (folder / "out.json").exists() and not (folder / "metrics.json").exists()


def test_a_moved_run_finds_its_file_beside_it_or_through_family(project, interrupted, tmp_path, monkeypatch, capsys):
    moved = copy_project(project, tmp_path / "elsewhere")  # run/ and fam.py moved together
    config = json.loads((moved / "run" / "config.json").read_text())
    assert config["family_file"]["relative"] == "../fam.py"
    assert config["family_file"]["absolute"] == str(project / "fam.py")
    assert json.loads((moved / "run" / "model.json").read_text())["family_file"]["relative"] == "../fam.py"
    # the original file is gone (renamed away); the working directory has an evil fam.py
    original = project / "fam.py"
    original.rename(project / "fam.py.away")
    try:
        cwd = tmp_path / "cwd"
        cwd.mkdir()
        marker = tmp_path / "MARKER"
        (cwd / "fam.py").write_text(FAMILY_FILE + marker_line(marker))
        monkeypatch.chdir(cwd)
        code, _, err = call(["solve", moved / "run", "--instances", moved / "in.json", "--out", "a.json"], capsys)
        assert code == 0, err
        assert json.loads(Path("a.json").read_text())["instances"][0]["variables"]["x"]
        assert from_checkpoint(moved / "run").family.name == f"{project / 'fam.py'}:family"  # API, no family given
        # the run folder alone, moved away from the file: a clear refusal, then --family
        alone = Path(shutil.copytree(moved / "run", tmp_path / "deep" / "er" / "run"))
        code, _, err = call(["solve", alone, "--instances", moved / "in.json", "--out", "b.json"], capsys)
        refused(code, err, "--family FILE.py:family")
        code, _, err = call(["solve", alone, "--instances", moved / "in.json", "--out", "b.json",
                             "--family", f"{moved / 'fam.py'}:family"], capsys)
        assert code == 0 and Path("b.json").is_file(), err
        code, _, err = call(["evaluate", alone, "--out", "m.json", "--family", f"{moved / 'fam.py'}:family"], capsys)
        assert code == 0 and Path("m.json").is_file(), err
        code, _, err = call(["train", f"{moved / 'fam.py'}:family", "--out", alone, "--resume"], capsys)
        assert code == 0, err
        # --family: same hash check (the evil file never runs), the recorded NAME, a real file
        for spec, needle in [("fam.py:family", "file changed"), (f"{moved / 'fam.py'}:other", "give FILE.py:family"),
                             ("nowhere.py:family", "does not exist"), ("fam.txt", "--family")]:
            code, _, err = call(["solve", alone, "--instances", moved / "in.json", "--out", "c.json",
                                 "--family", spec], capsys)
            refused(code, err, needle)
            assert not marker.exists() and not Path("c.json").exists()
        code, _, err = call(["evaluate", interrupted, "--out", "x.json", "--family", f"{moved / 'fam.py'}:family"],
                            capsys)  # a run of a registered family has no family file to point at
        refused(code, err, "not a family file")
    finally:
        (project / "fam.py.away").rename(original)


def test_a_relative_recorded_path_is_taken_against_the_run_folder_not_the_working_directory(
        project, tmp_path, monkeypatch, capsys):
    folder = copy_project(project, tmp_path / "p")
    run_dir = folder / "run"
    shutil.copy(folder / "fam.py", run_dir / "fam.py")
    for name in ("config.json", "model.json"):  # as a hand-written (or older) run records it
        data = json.loads((run_dir / name).read_text())
        data["family"] = "fam.py:family"
        data.pop("family_file", None)
        (run_dir / name).write_text(json.dumps(data))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    marker = tmp_path / "MARKER"
    (cwd / "fam.py").write_text(FAMILY_FILE + marker_line(marker))
    monkeypatch.chdir(cwd)
    code, _, err = call(["solve", run_dir, "--instances", folder / "in.json", "--out", "out.json"], capsys)
    assert code == 0, err
    assert not marker.exists()  # the working directory's fam.py was never executed
    (run_dir / "fam.py").unlink()
    code, _, err = call(["solve", run_dir, "--instances", folder / "in.json", "--out", "out2.json"], capsys)
    refused(code, err, "missing")
    assert not marker.exists() and not Path("out2.json").exists()


def test_a_family_file_imports_its_sibling_modules(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "fams"
    folder.mkdir()
    (folder / "helper_for_hardening.py").write_text("LOW, HIGH = -0.5, 0.5\n")
    sibling = "from convexop.prox import Box\nfrom helper_for_hardening import LOW, HIGH"
    (folder / "fam.py").write_text(FAMILY_FILE.replace("from convexop.prox import Box", sibling)
                                   .replace("Box(-0.5, 0.5)", "Box(LOW, HIGH)"))
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    path_before = list(sys.path)
    try:
        code, _, err = call(["generate", f"{folder / 'fam.py'}:family", "--n", "3", "--out", "d.h5"], capsys)
        assert code == 0, err
        assert sys.path == path_before  # the file's folder is on sys.path only while it loads
    finally:
        sys.modules.pop("helper_for_hardening", None)


# ----- 2. checkpoints, sizes, bounds -------------------------------------------------------------

def rewrite_checkpoint(run_dir: Path, change=None, change_tensors=None, rehash=True) -> None:
    """Edit the checkpoint's metadata (and tensors); with `rehash` its one sha256 is recomputed, as an
    editor who knows the format would, so that only the field checks stand in the way."""
    path = run_dir / "checkpoint_last.safetensors"
    with safe_open(str(path), "pt") as stream:
        header = stream.metadata()
    tensors = load_file(str(path))
    meta = json.loads(header["convexop"])
    if change is not None:
        change(meta)
    if change_tensors is not None:
        change_tensors(tensors)
    text = json.dumps(meta)
    digest = checkpoint_digest(tensors_digest(tensors), text) if rehash else header["convexop_sha256"]
    path.write_bytes(save(tensors, metadata={"convexop": text, "convexop_sha256": digest}))


def test_checkpoint_metadata_is_covered_by_its_hash(interrupted, tmp_path, capsys):
    for number, change in enumerate([lambda m: m.update(step=15), lambda m: m.update(cursor=0),
                                     lambda m: m["param_groups"][0].update(lr=0.5)]):
        run_dir = copy_run(interrupted, tmp_path, f"run{number}")
        rewrite_checkpoint(run_dir, change, rehash=False)
        before = (run_dir / "checkpoint_last.safetensors").read_bytes()
        code, _, err = call(["train", "toy-box", "--out", run_dir, "--resume"], capsys)
        refused(code, err, "sha256")
        assert (run_dir / "checkpoint_last.safetensors").read_bytes() == before
        assert not (run_dir / LOCK_NAME).exists()


def _set(path, value):
    def change(meta):
        target = meta
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


def _drop_tensor(name):
    return lambda tensors: tensors.pop(name)


DAMAGES = [
    ("step deleted", lambda m: m.pop("step"), None, "step"),
    ("step beyond the run", _set(["step"], 10**9), None, "step"),
    ("step a string", _set(["step"], "10"), None, "step"),
    ("T_max zero", _set(["scheduler", "T_max"], 0), None, "scheduler.T_max"),
    ("cursor negative", _set(["cursor"], -5), None, "cursor"),
    ("cursor past the data", _set(["cursor"], 10**6), None, "cursor"),
    ("order not a permutation", lambda m: m.update(order=[0] * len(m["order"])), None, "order"),
    ("order too short", lambda m: m.update(order=m["order"][:-1]), None, "order"),
    ("history not a list", _set(["history"], {"rows": 1}), None, "history"),
    ("elapsed infinite", _set(["elapsed"], math.inf), None, "elapsed"),
    ("epoch negative", _set(["epoch"], -1), None, "epoch"),
    ("rollbacks huge", _set(["rollbacks"], 10**6), None, "rollbacks"),
    ("count deleted", lambda m: m.pop("count"), None, "count"),
    ("lr a string", _set(["param_groups", 0, "lr"], "fast"), None, "param_groups[0].lr"),
    ("betas out of range", _set(["param_groups", 0, "betas"], [2.0, 0.9]), None, "param_groups[0].betas"),
    ("params of another model", _set(["param_groups", 0, "params"], [0]), None, "param_groups[0].params"),
    ("param_groups missing", lambda m: m.pop("param_groups"), None, "param_groups"),
    ("scheduler with a foreign key", _set(["scheduler", "evil"], 1), None, "scheduler.evil"),
    ("optimizer step nan", _set(["optimizer_scalars", "0", "step"], math.nan), None, "optimizer_scalars.0.step"),
    ("optimizer step deleted", lambda m: m["optimizer_scalars"]["0"].pop("step"), None, "parameter 0"),
    ("rng state deleted", None, _drop_tensor("rng.torch"), "rng.torch"),
    ("moment of the wrong shape", None, lambda t: t.update({"optimizer.0.exp_avg": torch.zeros(7)}),
     "optimizer.0.exp_avg"),
]


@pytest.mark.parametrize("what, change, change_tensors, field", DAMAGES, ids=[d[0] for d in DAMAGES])
def test_every_checkpoint_field_is_checked_before_use(interrupted, tmp_path, capsys, what, change, change_tensors,
                                                      field):
    run_dir = copy_run(interrupted, tmp_path)
    rewrite_checkpoint(run_dir, change, change_tensors)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    code, _, err = call(["train", "toy-box", "--out", run_dir, "--resume"], capsys)
    refused(code, err, field)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before  # nothing written


def test_an_intact_interrupted_run_still_resumes(interrupted, tmp_path, capsys):
    run_dir = copy_run(interrupted, tmp_path)
    code, _, err = call(["train", "toy-box", "--out", run_dir, "--resume"], capsys)
    assert code == 0, err
    assert json.loads((run_dir / "checkpoint_last.json").read_text())["step"] == 20
    assert not (run_dir / LOCK_NAME).exists()


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def test_a_model_too_large_for_memory_is_refused_before_allocating(interrupted, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    peak, start = _peak_rss_bytes(), time.perf_counter()
    # each within its own limit (depth <= 1000, width <= 10000, rank <= 40); the product is ~13 GB
    code, _, err = call(["train", "heat-pde", "--out", "big", "--set", "rank=40", "--set", "depth=1000",
                         "--set", "width=10000"], capsys)
    refused(code, err, "GiB", "CONVEXOP_MAX_MODEL_BYTES")
    assert not Path("big").exists()
    run_dir = copy_run(interrupted, tmp_path)
    meta = json.loads((run_dir / "model.json").read_text())
    meta |= {"family": "heat-pde", "family_config": {"rank": 40, "scale": 1.0}}
    meta["init_kwargs"] |= {"depth": 1000, "width": 10000}
    (run_dir / "model.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="model.*GiB.*CONVEXOP_MAX_MODEL_BYTES"):
        from_checkpoint(run_dir)
    assert time.perf_counter() - start < 60
    assert _peak_rss_bytes() - peak < 512 * 2**20  # the 3.2 GB of weights were never allocated
    # the limit is a setting
    monkeypatch.setenv("CONVEXOP_MAX_MODEL_BYTES", "100")
    code, _, err = call(["train", "toy-box", "--out", "small", *TINY_ARGS], capsys)
    refused(code, err, "GiB")
    monkeypatch.setenv("CONVEXOP_MAX_MODEL_BYTES", "lots")
    code, _, err = call(["train", "toy-box", "--out", "small", *TINY_ARGS], capsys)
    refused(code, err, "CONVEXOP_MAX_MODEL_BYTES")
    assert not Path("small").exists()


def test_iteration_counts_and_steps_are_bounded(interrupted, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for extra, field in [(["--set", "mode=equilibrium", "--set", "inference_iterations=1000000000"],
                          "inference_iterations"),
                         (["--set", "mode=equilibrium", "--set", "phantom_steps=1000000000"], "phantom_steps"),
                         (["--set", "steps=100000000"], "steps")]:
        code, _, err = call(["train", "toy-box", "--out", "r", *TINY_ARGS, *extra], capsys)
        refused(code, err, field)
        assert not Path("r").exists()
    run_dir = copy_run(interrupted, tmp_path)
    meta = json.loads((run_dir / "model.json").read_text())
    meta["init_kwargs"] |= {"mode": "equilibrium", "inference_iterations": 10**9}
    (run_dir / "model.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="inference_iterations"):
        from_checkpoint(run_dir)
    (tmp_path / "in.json").write_text(json.dumps({"instances": [
        {"A": [[2, 0], [0, 1]], "b": [1, -3], "c": 0, "beta": [0, 0], "kappa": 1}]}))
    code, _, err = call(["solve", run_dir, "--instances", "in.json", "--out", "o.json"], capsys)
    refused(code, err, "inference_iterations")
    assert not Path("o.json").exists()


def test_oversized_weights_and_checkpoints_are_refused_unread(interrupted, tmp_path, capsys):
    run_dir = copy_run(interrupted, tmp_path)
    with open(run_dir / "model.safetensors", "r+b") as stream:  # sparse: no disk used
        stream.truncate(8 * 2**30)
    start = time.perf_counter()
    with pytest.raises(InputError, match="bytes"):
        from_checkpoint(run_dir)
    with open(run_dir / "checkpoint_last.safetensors", "r+b") as stream:
        stream.truncate(20 * 2**30)
    code, _, err = call(["train", "toy-box", "--out", run_dir, "--resume"], capsys)
    refused(code, err, "exceeds the limit")
    assert time.perf_counter() - start < 10  # neither 8 GiB nor 20 GiB was read


# ----- 3. one writer per run folder --------------------------------------------------------------

def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_second_writer_is_refused_naming_the_holder(interrupted, tmp_path, capsys):
    run_dir = copy_run(interrupted, tmp_path)
    lock = run_dir / LOCK_NAME
    lock.write_text(f"{os.getpid()}\n")  # a live process holds it (this one)
    before = (run_dir / "checkpoint_last.safetensors").read_bytes()
    code, _, err = call(["train", "toy-box", "--out", run_dir, "--resume"], capsys)
    refused(code, err, str(os.getpid()), LOCK_NAME)
    code, _, err = call(["train", "toy-box", "--out", run_dir, *TINY_ARGS], capsys)
    refused(code, err, str(os.getpid()))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / LOCK_NAME).write_text(f"{os.getpid()}\n")
    code, _, err = call(["train", "toy-box", "--out", empty, *TINY_ARGS], capsys)
    refused(code, err, str(os.getpid()))
    other = subprocess.run([sys.executable, "-m", "convexop", "train", "toy-box", "--out", str(run_dir), "--resume"],
                           capture_output=True, text=True, env=os.environ | {"OMP_NUM_THREADS": "1"}, check=False)
    refused(other.returncode, other.stderr, f"process {os.getpid()}")  # another process, refused alike
    assert lock.read_text().strip() == str(os.getpid())  # the holder's lock is left alone
    assert (run_dir / "checkpoint_last.safetensors").read_bytes() == before
    # a stale lock (its process gone, or its pid now another process's) is taken over, released at the end
    reused = copy_run(interrupted, tmp_path, "reused")
    (reused / LOCK_NAME).write_text(f"{os.getpid()} 1\n")  # this pid, but of a process started at another time
    code, _, err = call(["train", "toy-box", "--out", reused, "--resume"], capsys)
    assert code == 0 and not (reused / LOCK_NAME).exists(), err
    lock.write_text(f"{dead_pid()}\n")
    code, _, err = call(["train", "toy-box", "--out", run_dir, "--resume"], capsys)
    assert code == 0, err
    assert not lock.exists()


def test_the_lock_is_held_while_training_and_released_on_errors(interrupted, tmp_path):
    run_dir = copy_run(interrupted, tmp_path)
    seen = []

    def look(row):
        seen.append((run_dir / LOCK_NAME).read_text().strip())
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        train_run(None, run_dir, resume=True, callback=look)
    assert [text.split()[0] for text in seen] == [str(os.getpid())]
    assert not (run_dir / LOCK_NAME).exists()


def killed_before_first_checkpoint(interrupted: Path, target: Path) -> Path:
    run_dir = Path(shutil.copytree(interrupted, target))
    for name in ("checkpoint_last.safetensors", "checkpoint_last.json"):
        (run_dir / name).unlink()
    (run_dir / LOCK_NAME).write_text(f"{dead_pid()}\n")
    (run_dir / ".model.json.0123456789ab.tmp").write_text("{half")
    return run_dir


def test_a_run_killed_before_its_first_checkpoint_restarts(interrupted, tmp_path, capsys):
    resumed = killed_before_first_checkpoint(interrupted, tmp_path / "resumed")
    code, _, err = call(["train", "toy-box", "--out", resumed, "--resume"], capsys)
    assert code == 0, err
    history = (resumed / "history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in history[1:]] == ["10", "20"]  # from step 0
    assert not (resumed / LOCK_NAME).exists() and not list(resumed.glob(".*.tmp"))
    fresh = killed_before_first_checkpoint(interrupted, tmp_path / "fresh")
    code, _, err = call(["train", "toy-box", "--out", fresh, *TINY_ARGS], capsys)
    assert code == 0, err
    assert json.loads((fresh / "checkpoint_last.json").read_text())["step"] == 20
    # a fresh train with other data settings draws its data again
    other = killed_before_first_checkpoint(interrupted, tmp_path / "other")
    code, _, err = call(["train", "toy-box", "--out", other, *TINY_ARGS, "--set", "n_instances=50"], capsys)
    assert code == 0, err
    import h5py

    with h5py.File(other / "train.h5") as h5:
        assert len(h5["params"]) == 40
    # a finished run, or a folder with other files, is still refused
    code, _, err = call(["train", "toy-box", "--out", fresh, *TINY_ARGS], capsys)
    refused(code, err, "--resume")
    (other / "checkpoint_last.json").unlink()
    (other / "checkpoint_last.safetensors").unlink()
    (other / "notes.txt").write_text("mine")
    code, _, err = call(["train", "toy-box", "--out", other, *TINY_ARGS], capsys)
    refused(code, err, "not empty")
    assert (other / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("name", ["elliptic-pde-2d", "elliptic-pde", "heat-pde"])
def test_memory_estimate_covers_the_measured_forward_within_2x(name):
    """model_footprint's activation part against the peak live tensor bytes of a real forward (the
    2-D family's pointwise activation on its 89 x 89 grid was under-estimated ~8x before)."""
    import numpy as np
    import torch

    from convexop.bench.memory import peak_memory
    from convexop.bench.solvers import geo_forward
    from convexop.families import get_family
    from convexop.models.base import build_model, model_footprint

    torch.manual_seed(0)
    family = get_family(name)
    model = build_model("geo", family, **family.default_training()["model"]).eval()
    theta = torch.as_tensor(family.sample(64, np.random.default_rng(0)))
    with torch.no_grad():
        peak = peak_memory(lambda: geo_forward(model, theta))
    estimate, _ = model_footprint("geo", family, model.init_kwargs, 64, training=False)
    activations = estimate - 4 * sum(p.numel() for p in model.parameters())
    assert peak <= activations <= 2 * peak, (peak, activations)
