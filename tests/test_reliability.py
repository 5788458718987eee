"""Reliability: validated boundaries, checkpoints that never execute code, crash-safe training,
numerical safety, streamed solving and fuzzing of IN.json and the command line.

Everything here runs on tiny budgets (toy-box, depth 2, width 3); the SIGKILL test runs the CLI in
subprocesses and is marked slow.
"""

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

import convexop
from convexop.cli import main
from convexop.errors import InputError
from convexop.families import FAMILIES as BUILTIN
from convexop.families import ToyBox, get_family
from convexop.models.base import from_checkpoint
from convexop.serving.instances import read_instances
from convexop.serving.solve import solve_file, solve_instances
from convexop.training.config import resolve_config
from convexop.training.run import train_run
from convexop.training.trainer import TrainingDiverged
from convexop.versioning import check_compatible

TINY = {"steps": "20", "eval_every": "10", "checkpoint_every": "10", "n_instances": "40", "batch_size": "8",
        "depth": "2", "width": "3", "tensorboard": "false"}
TINY_ARGS = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]
TOY_INSTANCE = {"A": [[2, 0], [0, 1]], "b": [1, -3], "c": 0, "beta": [0, 0], "kappa": 1}
SOURCE = Path(convexop.__file__).parent




@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("reliability") / "run"
    torch.set_num_threads(1)
    train_run(resolve_config(ToyBox, "geo", TINY), run_dir)
    return run_dir


def with_data(trained: Path, run_dir: Path) -> Path:
    """A new run folder holding the tiny runs' data sets (n_instances 40, data_seed 0), which
    `train_run` reuses instead of solving the references again."""
    run_dir.mkdir(parents=True)
    for name in ("train.h5", "test.h5"):
        shutil.copy(trained / name, run_dir / name)
    return run_dir


def copy_run(run_dir: Path, tmp_path: Path, name: str = "copy") -> Path:
    target = tmp_path / name
    shutil.copytree(run_dir, target)
    return target


def call(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# ----- 1. boundaries -----------------------------------------------------------------------------

BAD_ARGV = [
    (["generate", "toy-box", "--n", "3", "--seed", "-1", "--out", "d.h5"], "--seed"),
    (["generate", "toy-box", "--n", "3", "--seed", "99999999999999999999", "--out", "d.h5"], "--seed"),
    (["generate", "toy-box", "--n", "999999999999", "--out", "d.h5"], "--n"),
    (["generate", "toy-box", "--n", "3", "--out", "."], "--out"),
    (["generate", "toy-box", "--n", "3", "--out", "x\x00y.h5"], "--out"),
    (["generate", "toy-box", "--n", "3", "--shard", "3/3", "--out", "d.h5"], "--shard"),
    (["generate", "toy-box", "--n", "3", "--shard", "0/4", "--out", "d.h5"], "--shard"),
    (["generate", "toy-box", "--n", "3", "--shard", "one/two", "--out", "d.h5"], "--shard"),
    (["merge", "m.h5", "missing.h5"], "dataset"),
    (["train", "toy-box", "--out", "r", "--set", "depth=0"], "depth"),
    (["train", "toy-box", "--out", "r", "--set", "gamma=2"], "gamma"),
    (["train", "toy-box", "--out", "r", "--set", "mode=weird"], "mode"),
    (["train", "toy-box", "--out", "r", "--set", "test_law=weird"], "test_law"),
    (["train", "toy-box", "--out", "r", "--set", "seed=-5"], "seed"),
    (["train", "toy-box", "--out", "r", "--set", "max_rollbacks=-1"], "max_rollbacks"),
    (["train", "toy-box", "--out", "r", "--set", "test_fraction=0.99", "--set", "n_instances=2"], "test_fraction"),
    (["train", "toy-box", "--out", "r", "--set", "steps=1e3"], "steps"),
    (["train", "toy-box", "--out", "r", "--set", "device=cuda:99"], "device"),
    (["train", "toy-box", "--out", "r", "--set", "nonsense=1"], "valid keys"),
    (["train", "toy-box", "--model", "fno", "--out", "r", "--set", "width=0"], "width"),
    (["train", "toy-box", "--out", "in.json"], "--out"),
    (["train", "toy-box", "--out", "r", "--resume"], "not a run"),
    (["demo", "--out", "in.json"], "--out"),
    (["demo", "--out", "precious"], "--out"),
    (["evaluate", "nowhere"], "not a run"),
    (["solve", "nowhere", "--instances", "in.json", "--out", "o.json"], "not a run"),
]


@pytest.mark.parametrize("argv, field", BAD_ARGV, ids=[" ".join(a)[:60] for a, _ in BAD_ARGV])
def test_bad_arguments_exit_2_with_one_line_and_no_output(tmp_path, monkeypatch, capsys, argv, field):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.json").write_text(json.dumps({"instances": [TOY_INSTANCE]}))
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("years of work")
    before = files_under(tmp_path)
    code, _, err = call(argv, capsys)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and field in err and "Traceback" not in err, err
    assert files_under(tmp_path) == before  # no partial output, and demo deleted nothing


def test_bad_run_directories_are_refused_naming_the_field(trained, tmp_path, capsys):
    instances = tmp_path / "in.json"
    instances.write_text(json.dumps({"instances": [TOY_INSTANCE]}))

    def edit(path, change):
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))

    cases = [
        (lambda d: edit(d / "config.json", lambda c: c["training"].update(steps="abc")), "training.steps"),
        (lambda d: edit(d / "config.json", lambda c: c["training"].update(lr=-1.0)), "training.lr"),
        (lambda d: edit(d / "config.json", lambda c: c.update(family="nope")), "family"),
        (lambda d: edit(d / "config.json", lambda c: c.update(model="nope")), "model"),
        (lambda d: (d / "config.json").write_text("[" * 50000), "malformed"),
        (lambda d: (d / "config.json").write_bytes(b"\xff\xfe\x00"), "malformed"),
        (lambda d: edit(d / "model.json", lambda c: c.update(init_kwargs=[1])), "malformed"),
        (lambda d: edit(d / "model.json", lambda c: c["init_kwargs"].update(depth=5)), "do not fit"),
        (lambda d: edit(d / "model.json", lambda c: c.update({"class": "fno"})), "do not build"),
        (lambda d: edit(d / "model.json", lambda c: c.update(family="heat-pde")), "trained on heat-pde"),
        (lambda d: edit(d / "model.json", lambda c: c.update(package_version="2.0.0")), "newer major"),
    ]
    for number, (damage, message) in enumerate(cases):
        run_dir = copy_run(trained, tmp_path, f"run{number}")
        damage(run_dir)
        out = tmp_path / f"out{number}.json"
        code, _, err = call(["solve", str(run_dir), "--instances", str(instances), "--out", str(out)], capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (number, err)
        assert not out.exists()


# ----- 2. checkpoints ----------------------------------------------------------------------------

PICKLE_PATTERNS = [
    (r"\bpickle\.loads?\(", "pickle.load"),
    (r"\bimport (c?pickle|dill|cloudpickle|joblib|marshal|shelve)\b", "a pickle-family import"),
    (r"\bfrom (c?pickle|dill|cloudpickle|joblib|marshal|shelve) import\b", "a pickle-family import"),
    (r"allow_pickle\s*=\s*True", "np.load(allow_pickle=True)"),
    (r"\.load\(\s*[^)]*\bpickle_module\b", "a pickle_module"),
]


def test_no_pickle_loading_anywhere_in_the_package():
    offences = []
    files = sorted(SOURCE.rglob("*.py"))
    assert len(files) > 30
    for path in files:
        text = path.read_text()
        for pattern, what in PICKLE_PATTERNS:
            offences += [f"{path.name}: {what}" for _ in re.finditer(pattern, text)]
        for match in re.finditer(r"\btorch\.load\(", text):  # only with weights_only=True
            call_text = text[match.end():text.find(")", match.end()) + 1]
            if "weights_only=True" not in call_text:
                offences.append(f"{path.name}: torch.load without weights_only=True")
    assert not offences, offences


def test_tampered_truncated_and_mismatched_checkpoints_are_refused(trained, tmp_path):
    refused = 0

    def refuse(run_dir, message, **kwargs):
        nonlocal refused
        with pytest.raises(InputError, match=message):
            from_checkpoint(run_dir, **kwargs)
        refused += 1

    weights = trained / "model.safetensors"
    for name, damage in [("flipped", lambda b: b[:-9] + bytes([b[-9] ^ 0xFF]) + b[-8:]),
                         ("truncated", lambda b: b[: len(b) // 2]), ("empty", lambda b: b""),
                         ("appended", lambda b: b + b"\x00" * 8)]:
        run_dir = copy_run(trained, tmp_path, name)
        (run_dir / "model.safetensors").write_bytes(damage(weights.read_bytes()))
        refuse(run_dir, "sha256")
    refuse(trained, "trained on toy-box", family=get_family("heat-pde"))
    # a checkpoint of another run (same family, other shapes) swapped in with its metadata kept
    other = with_data(trained, tmp_path / "other")
    train_run(resolve_config(ToyBox, "geo", TINY | {"steps": "1", "depth": "3"}), other)
    swapped = copy_run(trained, tmp_path, "swapped")
    shutil.copy(other / "model.safetensors", swapped / "model.safetensors")
    refuse(swapped, "sha256")
    meta = json.loads((other / "model.json").read_text())
    meta["init_kwargs"]["depth"] = 2
    (swapped / "model.json").write_text(json.dumps(meta))
    refuse(swapped, "do not fit")
    # the resume checkpoint: its metadata travels in the safetensors header
    for name, damage in [("ckpt-truncated", lambda b: b[: len(b) - 100]),
                         ("ckpt-flipped", lambda b: b[:-5] + bytes([b[-5] ^ 0x01]) + b[-4:])]:
        run_dir = copy_run(trained, tmp_path, name)
        path = run_dir / "checkpoint_last.safetensors"
        path.write_bytes(damage(path.read_bytes()))
        with pytest.raises(InputError, match="--resume.*(unreadable|sha256)"):
            train_run(None, run_dir, resume=True)
        refused += 1
    assert refused == 9
    assert from_checkpoint(trained).parameter_count() == 2 * 2 * (2 + 6 + 1) + 4  # the intact one loads


def test_version_rule_older_minor_loads_newer_major_is_refused(trained, tmp_path):
    assert json.loads((trained / "model.json").read_text())["package_version"] == convexop.__version__
    run_dir = copy_run(trained, tmp_path)
    meta_path = run_dir / "model.json"
    meta = json.loads(meta_path.read_text())
    for version, loads in [("0.0.1", True), ("0.1.0", True), ("0.1.7+local", True), ("0.9.0", True),
                           ("1.0.0", False), ("7.2.1", False), ("banana", False), (None, False), (3, False)]:
        meta_path.write_text(json.dumps(meta | {"package_version": version}))
        if loads:
            assert from_checkpoint(run_dir).parameter_count() > 0
        else:
            with pytest.raises(InputError, match="package_version.*(newer major|malformed)"):
                from_checkpoint(run_dir)
    # the rule itself, against other current versions
    check_compatible("1.0.3", "f", current="1.4.0")
    check_compatible("1.9.0", "f", current="1.4.0")
    with pytest.raises(InputError, match="older major version 1"):
        check_compatible("1.9.0", "f", current="2.0.0")
    with pytest.raises(InputError, match="upgrade convexop"):
        check_compatible("3.0.0", "f", current="2.5.1")
    # data sets follow the same rule
    path = copy_run(trained, tmp_path, "data") / "test.h5"
    with h5py.File(path, "a") as h5:
        h5.attrs["version"] = "5.0.0"
    with pytest.raises(InputError, match="newer major version 5"):
        load_dataset(path)
    with h5py.File(path, "a") as h5:
        h5.attrs["version"] = "0.0.9"
    assert len(load_dataset(path).params) == 8


def load_dataset(path):
    from convexop.data import read_dataset

    return read_dataset(path, get_family("toy-box"))


def test_datasets_are_checked_on_open(trained, tmp_path):
    from convexop.data import read_dataset

    run_dir = copy_run(trained, tmp_path)
    with h5py.File(run_dir / "train.h5", "a") as h5:
        h5["targets"][0, 0] = 5.0
    with pytest.raises(InputError, match="sha256"):
        read_dataset(run_dir / "train.h5")
    (run_dir / "test.h5").write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="not a convexop HDF5"):
        read_dataset(run_dir / "test.h5")
    with pytest.raises(InputError, match="made for family toy-box, not heat-pde"):
        read_dataset(trained / "test.h5", get_family("heat-pde"))


# ----- 3. crash-safe training --------------------------------------------------------------------

KILL_ARGS = ["train", "toy-box", "--set", "steps=400", "--set", "checkpoint_every=20", "--set", "eval_every=20",
             "--set", "n_instances=64", "--set", "batch_size=16", "--set", "depth=2", "--set", "width=3",
             "--set", "tensorboard=false"]


def history_rows(run_dir: Path) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k != "seconds"}
            for row in csv.DictReader((run_dir / "history.csv").open())]


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_is_bit_identical(tmp_path):
    env = os.environ | {"OMP_NUM_THREADS": "1"}

    def start(*argv):
        return subprocess.Popen([sys.executable, "-m", "convexop", *argv], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    straight = start(*KILL_ARGS, "--out", str(tmp_path / "straight"))
    victim = start(*KILL_ARGS, "--out", str(tmp_path / "killed"))
    checkpoint = tmp_path / "killed" / "checkpoint_last.json"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert victim.poll() is None, "training finished before it could be killed"
    victim.send_signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL
    killed_at = json.loads(checkpoint.read_text())["step"]
    assert 20 <= killed_at < 400
    resumed = subprocess.run([sys.executable, "-m", "convexop", *KILL_ARGS[:2], "--out", str(tmp_path / "killed"),
                              "--resume"], env=env, capture_output=True, text=True, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert straight.wait() == 0, straight.stderr.read()
    a, b = tmp_path / "straight", tmp_path / "killed"
    assert history_rows(a) == history_rows(b) and int(history_rows(b)[-1]["step"]) == 400
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    final_a = load_file(str(a / "checkpoint_last.safetensors"))
    final_b = load_file(str(b / "checkpoint_last.safetensors"))
    for key in final_a:
        if key.startswith(("model.", "optimizer.")):
            assert torch.equal(final_a[key], final_b[key]), key
    assert not list(b.glob(".*.tmp"))  # temporaries of the killed write were swept


def test_every_run_file_is_written_atomically(tmp_path, monkeypatch):
    """Every file of a run reaches its name through os.replace from a temporary in the same folder."""
    renamed, original = [], os.replace

    def spy(source, target):
        renamed.append((Path(source), Path(target)))
        return original(source, target)

    monkeypatch.setattr(os, "replace", spy)
    train_run(resolve_config(ToyBox, "geo", TINY | {"tensorboard": "false"}), tmp_path / "run")
    written = {target.name for _, target in renamed}
    assert written >= {"config.json", "train.h5", "test.h5", "model.safetensors", "model.json", "history.csv",
                       "checkpoint_last.safetensors", "checkpoint_last.json"}
    assert all(s.parent == t.parent and s.name.startswith(f".{t.name}.") for s, t in renamed)
    assert files_under(tmp_path / "run") == written


# ----- 4. numerical safety -----------------------------------------------------------------------

SAFE = TINY | {"steps": "40", "schedule": "constant", "lr": "1e-2"}


def poison(monkeypatch, bad_calls):
    """Make the training loss NaN on the given training calls (counted from 1)."""
    calls = {"n": 0}
    original = ToyBox.error

    def error(self, predicted, target):
        out = original(self, predicted, target)
        if torch.is_grad_enabled():
            calls["n"] += 1
            if bad_calls(calls["n"]):
                return out * float("nan")
        return out

    monkeypatch.setattr(ToyBox, "error", error)
    return calls


def test_a_nan_rolls_back_to_the_last_checkpoint_and_halves_the_learning_rate(trained, tmp_path, monkeypatch):
    _, clean = train_run(resolve_config(ToyBox, "geo", SAFE), with_data(trained, tmp_path / "clean"))
    calls = poison(monkeypatch, lambda n: n == 25)
    rows = []
    _, history = train_run(resolve_config(ToyBox, "geo", SAFE), with_data(trained, tmp_path / "poisoned"),
                           callback=rows.append)
    assert calls["n"] == 45  # steps 21..25 replayed from the step-20 checkpoint
    events = [row for row in rows if row.get("event") == "rollback"]  # said, never silent
    assert len(events) == 1 and events[0]["step"] == 25 and events[0]["to_step"] == 20
    assert events[0]["lr"] == 5e-3 and "nan" in events[0]["reason"]
    assert [row["lr"] for row in history] == [1e-2, 1e-2, 5e-3, 5e-3]
    assert history[:2] == [row | {"seconds": history[i]["seconds"]} for i, row in enumerate(clean[:2])]
    assert all(np.isfinite(row["train_mse"]) for row in history)
    meta = json.loads((tmp_path / "poisoned" / "checkpoint_last.json").read_text())
    assert meta["rollbacks"] == 1 and meta["param_groups"][0]["lr"] == 5e-3


def test_a_finite_blow_up_rolls_back_like_a_nan(trained, tmp_path, monkeypatch):
    original = ToyBox.error
    calls = {"n": 0}

    def error(self, predicted, target):  # step 25's batch error: finite but 1e6 times too large
        out = original(self, predicted, target)
        if torch.is_grad_enabled():
            calls["n"] += 1
            if calls["n"] == 25:
                return out * 1e6
        return out

    monkeypatch.setattr(ToyBox, "error", error)
    rows = []
    _, history = train_run(resolve_config(ToyBox, "geo", SAFE), with_data(trained, tmp_path / "blown"),
                           callback=rows.append)
    events = [row for row in rows if row.get("event") == "rollback"]
    assert len(events) == 1 and events[0]["step"] == 25 and "blew up" in events[0]["reason"]
    assert events[0]["lr"] == 5e-3 and all(np.isfinite(row["train_mse"]) for row in history)


def test_a_persistent_nan_stops_after_max_rollbacks_with_a_clear_message(trained, tmp_path, monkeypatch, capsys):
    calls = poison(monkeypatch, lambda n: n >= 15)
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 11 after 3 roll-back\(s\).*"
                                               r"max_rollbacks = 3, lr now 0.00125.*step 10"):
        train_run(resolve_config(ToyBox, "geo", SAFE), with_data(trained, tmp_path / "run"))
    assert calls["n"] == 18
    meta = json.loads((tmp_path / "run" / "checkpoint_last.json").read_text())
    assert meta["step"] == 10 and meta["rollbacks"] == 0  # the last good checkpoint is left as it was
    assert all(torch.isfinite(v).all() for v in from_checkpoint(tmp_path / "run").state_dict().values())
    poison(monkeypatch, lambda n: n >= 3)
    code, _, err = call(["train", "toy-box", "--out", str(tmp_path / "cli"), "--set", "max_rollbacks=0"]
                        + [a for k, v in SAFE.items() for a in ("--set", f"{k}={v}")], capsys)
    lines = [line for line in err.splitlines() if "convexop:" in line]
    assert code == 1 and len(lines) == 1 and "training diverged" in lines[0] and "max_rollbacks = 0" in lines[0]
    assert "Traceback" not in err


# ----- 6. streamed solving -----------------------------------------------------------------------

def test_solve_streams_batches_and_writes_what_the_whole_file_path_writes(trained, tmp_path):
    model = from_checkpoint(trained)
    rng = np.random.default_rng(1)
    instances = [model.family.instance_from_theta(row) for row in model.family.sample(300, rng)]
    path = tmp_path / "in.json"
    path.write_text(json.dumps({"comment": {"x": ["]", "}"]}, "instances": instances, "after": 1}, indent=1))
    out = tmp_path / "out.json"
    summary = solve_file(model, path, out, batch=64)
    assert summary["n"] == 300 and summary["iterations"] == 0 and sum(summary["status"].values()) == 300
    assert set(summary["status"]) <= {"optimal", "optimal_inaccurate"}
    assert out.read_bytes() == json.dumps(solve_instances(model, read_instances(path))).encode()
    instances[201]["kappa"] = -1.0  # a bad instance in the fourth batch: named by its place, no output
    path.write_text(json.dumps({"instances": instances}))
    out.unlink()
    with pytest.raises(InputError, match=r"instances\[201\]\.kappa"):
        solve_file(model, path, out, batch=64)
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))


# ----- 7. fuzzing --------------------------------------------------------------------------------

FUZZ = settings(max_examples=1500, deadline=None, database=None, derandomize=True,
                suppress_health_check=list(HealthCheck))
FUZZ_CHEAP = settings(FUZZ, max_examples=3000)  # instance validation: ~1 ms an example
COUNTS: dict[str, int] = {}

json_scalars = (st.none() | st.booleans() | st.integers(-10**400, 10**400) | st.floats(allow_nan=True)
                | st.text(max_size=8) | st.sampled_from(["call", "put", "gap_call", "nan", "1e999", ""]))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=12)


def _texts():
    valid = st.builds(lambda v: json.dumps({"instances": v}, allow_nan=True), json_values)
    mutated = st.builds(lambda text, cut, junk: text[:cut] + junk + text[cut:], valid,
                        st.integers(0, 60), st.sampled_from(["", "{", "]", ",", "\"", "\\", "\x00", "\ud800", "[[[["]))
    return valid | mutated | st.text(max_size=80) | st.just("[" * 5000)


def test_fuzz_in_json_parsing_never_crashes(tmp_path):
    path = tmp_path / "in.json"
    COUNTS["in.json"] = 0

    @FUZZ
    @given(_texts())
    def check(text):
        COUNTS["in.json"] += 1
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        try:
            instances = read_instances(path)
        except InputError as error:
            assert "\n" not in str(error)
            COUNTS["in.json refused"] = COUNTS.get("in.json refused", 0) + 1
            return
        assert isinstance(instances, list) and instances

    check()
    assert COUNTS["in.json"] >= 1500


FAMILIES = ["toy-box", "heat-pde", "elliptic-pde", "utility-max", "hedging"]
numbers = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10**400, 10**400)
shaped = st.lists(numbers, min_size=2, max_size=2) | st.lists(st.lists(numbers, min_size=2, max_size=2),
                                                               min_size=2, max_size=2)
small_values = numbers | shaped | json_scalars | st.lists(json_scalars, max_size=3) | st.dictionaries(
    st.text(max_size=3), json_scalars, max_size=2)


def _instances():
    """Per family: instances with all of its parameters (values of every kind, near and far from
    the domains), with extra or missing keys, or not objects at all."""
    def family_cases(name):
        names = [p.name for p in BUILTIN[name].parameters] if name in BUILTIN else []
        full = st.fixed_dictionaries({n: small_values for n in names},
                                     optional={"extra": small_values, "": small_values})
        partial = st.dictionaries(st.sampled_from(names or ["x"]) | st.text(max_size=3), small_values, max_size=4)
        return st.tuples(st.just(name), st.lists(full | partial | small_values, max_size=3))

    return st.one_of([family_cases(name) for name in FAMILIES if name in BUILTIN])


def test_fuzz_instance_validation_never_crashes():
    families = {name: get_family(name) for name in FAMILIES if name in BUILTIN}
    COUNTS["instances"] = accepted = 0

    @FUZZ_CHEAP
    @given(_instances())
    def check(case):
        nonlocal accepted
        name, instances = case
        if name not in families:
            return
        COUNTS["instances"] += 1
        family = families[name]
        try:
            theta = family.theta_from_instances(instances)
        except InputError as error:
            assert "\n" not in str(error)
            COUNTS["instances refused"] = COUNTS.get("instances refused", 0) + 1
            return
        accepted += 1
        assert theta.shape == (len(instances), family.theta_size) and np.isfinite(theta).all()

    check()
    assert COUNTS["instances"] >= 3000


class Reached(BaseException):
    """A fuzzed command line passed every check and reached the (stubbed) expensive work."""


def test_fuzz_command_lines_never_crash(trained, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.json").write_text(json.dumps({"instances": [TOY_INSTANCE]}))
    (tmp_path / "bad.json").write_text('{"instances": [{"nu": -1}]}')
    (tmp_path / "folder").mkdir()

    def stop(*args, **kwargs):
        raise Reached

    import convexop.bench.runner
    import convexop.data
    import convexop.evaluation.demo
    import convexop.studies.width
    import convexop.training.run

    for module, name in [(convexop.data, "generate"), (convexop.training.run, "train_run"),
                         (convexop.evaluation.demo, "run_demo"), (convexop.bench.runner, "run_bench"),
                         (convexop.studies.width, "run_width_study")]:
        monkeypatch.setattr(module, name, stop)
    words = ["families", "generate", "merge", "train", "evaluate", "solve", "demo", "bench", "study", "width",
             "toy-box", "heat-pde", "hedging", "nope", "--n", "--seed", "--law", "--out", "--force", "--shard",
             "--model", "geo", "fno", "mlp", "--set", "--resume", "--instances", "--polish", "--start",
             "--polish-iterations", "--quick", "--only", "--widths", "--steps", "--lr", "--help",
             "0", "1", "-1", "3", "1e3", "nan", "inf", "0/2", "2/2", "ood", "train", "zero", "random",
             "in.json", "bad.json", "folder", "folder/x.h5", "missing/x", "x.h5", "o.json", str(trained),
             "depth=0", "depth=2", "steps=1", "lr=nan", "gamma=0.5", "width=-1", "device=cuda", "foo=1",
             "=", "key", "", "\x00", "é", "--", "-"]
    token = st.sampled_from(words) | st.text(max_size=6)
    run = str(trained)
    templates = [["generate", "toy-box", "--n", "3", "--out", "x.h5"],
                 ["generate", "heat-pde", "--n", "4", "--shard", "0/2", "--seed", "1", "--out", "x.h5"],
                 ["merge", "m.h5", "x.h5", "y.h5"], ["train", "toy-box", "--out", "r", "--set", "depth=2"],
                 ["train", "toy-box", "--model", "mlp", "--out", "r", "--resume"],
                 ["evaluate", run, "--out", "o.json"], ["solve", run, "--instances", "in.json", "--out", "o.json"],
                 ["solve", run, "--instances", "in.json", "--out", "o.json", "--polish", "1e-6"],
                 ["demo", "--out", "d", "--set", "steps=1"], ["bench", "--quick", "--out", "b", "--only", "toy-box"],
                 ["study", "width", "--out", "s", "--widths", "10,20", "--steps", "1"]]

    def mutate(template, edits):
        argv = list(template)
        for operation, position, word in edits:
            position %= len(argv) + 1
            if operation == "insert" or position == len(argv):
                argv.insert(position, word)
            elif operation == "replace":
                argv[position] = word
            else:
                del argv[position]
        return argv

    edits = st.lists(st.tuples(st.sampled_from(["replace", "insert", "delete"]), st.integers(0, 12), token),
                     max_size=3)
    command_lines = st.builds(mutate, st.sampled_from(templates), edits) | st.lists(token, max_size=7)
    COUNTS["argv"] = 0
    outcomes: dict[str, int] = {}

    @FUZZ
    @given(command_lines)
    def check(argv):
        COUNTS["argv"] += 1
        try:
            code = main(argv)
        except SystemExit as stop_:
            code = stop_.code
        except Reached:
            code = "reached"
        err = capsys.readouterr().err
        outcomes[str(code)] = outcomes.get(str(code), 0) + 1
        assert "Traceback" not in err and code in (0, 2, "reached"), (argv, err)
        if code == 2:
            assert len([line for line in err.splitlines() if line.strip()]) == 1, (argv, err)

    check()
    assert COUNTS["argv"] >= 1500 and outcomes.get("2", 0) > 500 and outcomes.get("reached", 0) > 5, outcomes
    print(f"\nfuzz counts: {COUNTS}, argv outcomes: {outcomes}")
