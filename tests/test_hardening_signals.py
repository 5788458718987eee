"""Temporaries: SIGTERM removes this process's temporary output; a dead writer's leftovers are swept
on the next write, a live writer's never; user code calling sys.exit is one line, nothing written."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import torch

from convexop.families import get_family
from convexop.files import atomic_output, remove_stale_temporaries
from convexop.models.base import build_model, save_model
from convexop.training.config import resolve_config


def _saved_toy_run(tmp_path):
    family = get_family("toy-box")
    config = resolve_config(type(family), "geo", {"depth": "2", "width": "3"})
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps(config.to_json()))
    torch.manual_seed(0)
    save_model(build_model("geo", family, **config.model_kwargs), run_dir)
    return run_dir, family


def test_sigterm_during_solve_leaves_no_temporary(tmp_path):
    run_dir, family = _saved_toy_run(tmp_path)
    rows = family.sample(60_000, np.random.default_rng(0))
    instances = tmp_path / "in.json"
    instances.write_text(json.dumps({"instances": [family.instance_from_theta(r) for r in rows]}))
    out = tmp_path / "out.json"
    process = subprocess.Popen([sys.executable, "-m", "convexop", "solve", str(run_dir), "--instances",
                                str(instances), "--out", str(out), "--polish", "1e-12"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list(tmp_path.glob(".out.json.*.tmp")) and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert list(tmp_path.glob(".out.json.*.tmp")), "the solve never started writing"
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143 and "terminated" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))


def test_stale_temporaries_of_dead_writers_are_swept_never_live_ones(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".out.json.{dead_pid}-abcd1234.tmp"
    live = tmp_path / f".out.json.{os.getppid()}-abcd1234.tmp"  # our parent is alive
    stale.write_text("half"), live.write_text("half")
    with atomic_output(tmp_path / "out.json") as tmp, open(tmp, "x") as stream:
        stream.write("{}")
    assert not stale.exists() and live.exists() and (tmp_path / "out.json").read_text() == "{}"
    assert remove_stale_temporaries(tmp_path) == 0 and live.exists()


def test_family_file_calling_sys_exit_is_one_line_and_writes_nothing(tmp_path):
    family_file = tmp_path / "fam.py"
    family_file.write_text(
        "import sys, convexop\nfrom convexop.prox import Box\n"
        "def sampler(n, rng):\n    sys.exit(0)\n"
        "family = convexop.from_torch(lambda x, t: (x ** 2).sum(-1), Box(-1, 1), variables=2,\n"
        "                             parameters={'c': 2}, sampler=sampler)\n")
    out = tmp_path / "d.h5"
    result = subprocess.run([sys.executable, "-m", "convexop", "generate", f"{family_file}:family", "--n", "5",
                             "--seed", "0", "--out", str(out)], capture_output=True, text=True, check=False)
    assert result.returncode == 2 and "sys.exit(0)" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))


def test_user_code_error_names_the_file_and_function_and_debug_shows_the_traceback(tmp_path):
    family_file = tmp_path / "fam.py"
    family_file.write_text(
        "import convexop\nfrom convexop.prox import Box\n"
        "def g(x, theta):\n    return 1 / 0\n"
        "family = convexop.from_torch(g, Box(-1, 1), variables=2, parameters={'c': 2}, sampler={'c': (-1, 1)})\n")
    argv = [sys.executable, "-m", "convexop", "generate", f"{family_file}:family", "--n", "5", "--seed", "0",
            "--out", str(tmp_path / "d.h5")]
    plain = subprocess.run(argv, capture_output=True, text=True, check=False)
    lines = [line for line in plain.stderr.replace("\r", "\n").splitlines() if line.startswith("convexop:")]
    assert plain.returncode == 2 and "Traceback" not in plain.stderr and len(lines) == 1
    assert f"family file {family_file.resolve()}, in g (line 4): raised ZeroDivisionError" in lines[0]
    debug = subprocess.run(argv[:3] + ["--debug"] + argv[3:], capture_output=True, text=True, check=False)
    assert debug.returncode == 2 and "Traceback" in debug.stderr
