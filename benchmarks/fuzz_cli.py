"""Hostile and unlucky inputs through the CLI: count clean exits, tracebacks, hangs, NaN answers, leftovers.

    python benchmarks/fuzz_cli.py [WORK_DIR]     (about 3 minutes; prints the counts)

Each probe runs `convexop ...` in a subprocess (120 s limit): IN.json with huge integers, NaN, inf, 1e308,
wrong types and shapes, deep nesting, binary bytes; --polish / --tol variants; outputs under /proc, /sys, a
folder, a name past the file-system limit; hostile --set values; bad shards. "clean" = exit 0, or exit 2 with
one error line; any traceback, NaN/Infinity in a written JSON file or leftover temporary is counted.
"""

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

CLI = [sys.executable, "-m", "convexop"]
W = Path(sys.argv[1] if len(sys.argv) > 1 else "fuzz-work").resolve()
W.mkdir(exist_ok=True)
os.chdir(W)
run = W / "run"
if not run.exists():
    subprocess.run(
        CLI
        + [
            "train",
            "toy-box",
            "--out",
            str(run),
            "--set",
            "steps=20",
            "--set",
            "eval_every=10",
            "--set",
            "n_instances=60",
            "--set",
            "depth=3",
            "--set",
            "width=5",
            "--set",
            "tensorboard=false",
        ],
        check=True,
        capture_output=True,
    )
good = {"A": [[2, 0.5], [0.5, 1]], "b": [1, -3], "c": 0, "beta": [0, 0], "kappa": 1}
probes = []


def inst(text, name):
    p = W / f"{name}.json"
    p.write_text(text)
    return str(p)


for name, payload in [
    (
        "bigint",
        '{"instances": [{"A": [[2, 0.5], [0.5, 1]], "b": [1, -3], "c": '
        + "9" * 5000
        + ', "beta": [0, 0], "kappa": 1}]}',
    ),
    ("c1e308", json.dumps({"instances": [good | {"c": 1e308}]})),
    ("kappa1e308", json.dumps({"instances": [good | {"kappa": 1e308}]})),
    ("A3e38", json.dumps({"instances": [good | {"A": [[3e38, 0], [0, 3e38]]}]})),
    ("nan", '{"instances": [{"A": [[2, 0.5], [0.5, 1]], "b": [NaN, -3], "c": 0, "beta": [0, 0], "kappa": 1}]}'),
    ("inf", '{"instances": [{"A": [[2, 0.5], [0.5, 1]], "b": [Infinity, -3], "c": 0, "beta": [0, 0], "kappa": 1}]}'),
    ("string", json.dumps({"instances": [good | {"c": "zero"}]})),
    ("bool", json.dumps({"instances": [good | {"c": True}]})),
    ("nested", '{"instances": [' + "[" * 100000 + "]" * 100000 + "]}"),
    ("shape", json.dumps({"instances": [good | {"b": [1, 2, 3]}]})),
    ("extra", json.dumps({"instances": [good | {"zzz": 1}]})),
    ("missing", json.dumps({"instances": [{k: v for k, v in good.items() if k != "b"}]})),
    ("empty", json.dumps({"instances": []})),
    ("notobj", json.dumps([1, 2])),
    ("binary", "\x00\xff\xfe"),
    ("beta1e300", json.dumps({"instances": [good | {"beta": [1e300, 0]}]})),
    ("nonpsd", json.dumps({"instances": [good | {"A": [[1, 2], [2, 1]]}]})),
    ("ok", json.dumps({"instances": [good] * 3})),
]:
    path = inst(payload, name)
    probes.append(
        (f"solve {name}", CLI + ["solve", str(run), "--instances", path, "--out", str(W / f"out-{name}.json")])
    )
    probes.append(
        (
            f"solve {name} polish",
            CLI + ["solve", str(run), "--instances", path, "--out", str(W / f"outp-{name}.json"), "--polish", "1e-6"],
        )
    )
ok = inst(json.dumps({"instances": [good]}), "one")
for name, extra in [
    ("polish0", ["--polish", "0"]),
    ("polishnan", ["--polish", "nan"]),
    ("iters0", ["--polish", "1e-6", "--polish-iterations", "0"]),
    ("iters_huge", ["--polish", "1e-6", "--polish-iterations", "100000000000"]),
    ("tolneg", ["--tol", "-1"]),
]:
    probes.append(
        (f"solve {name}", CLI + ["solve", str(run), "--instances", ok, "--out", str(W / f"o-{name}.json")] + extra)
    )
for name, out in [
    ("proc", "/proc/x.json"),
    ("sys", "/sys/x.json"),
    ("longname", str(W / ("x" * 250 + ".json"))),
    ("dir", str(W)),
]:
    probes.append((f"out {name}", CLI + ["solve", str(run), "--instances", ok, "--out", out]))
for key, value in [
    ("steps", "1e20"),
    ("steps", "100000000000"),
    ("depth", "1000"),
    ("width", "10000"),
    ("lr", "nan"),
    ("lr", "-1"),
    ("batch_size", "0"),
    ("inference_iterations", "1000000000"),
    ("zzz", "1"),
    ("mode", "x"),
    ("n_instances", "1"),
]:
    probes.append(
        (
            f"train {key}={value}",
            CLI
            + [
                "train",
                "toy-box",
                "--out",
                str(W / f"t-{key}-{value}"),
                "--set",
                f"{key}={value}",
                "--set",
                "steps=2" if key != "steps" else "eval_every=1",
            ],
        )
    )
probes += [
    ("generate n0", CLI + ["generate", "toy-box", "--n", "0", "--seed", "0", "--out", str(W / "g.h5")]),
    (
        "generate shard",
        CLI
        + [
            "generate",
            "toy-box",
            "--n",
            "5",
            "--seed",
            "0",
            "--shard",
            "0/1000000000000000",
            "--out",
            str(W / "g2.h5"),
        ],
    ),
    ("evaluate notrun", CLI + ["evaluate", str(W)]),
    ("families", CLI + ["families"]),
    ("unknown family", CLI + ["train", "nope", "--out", str(W / "u")]),
]
counts = {"tried": 0, "clean": 0, "traceback": 0, "hang": 0, "nan_in_output": 0, "exit1": 0}
for label, argv in probes:
    counts["tried"] += 1
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        counts["hang"] += 1
        print("HANG", label)
        continue
    err = r.stderr
    lines = [l for l in err.replace("\r", "\n").splitlines() if l.startswith("convexop:")]
    bad = "Traceback" in err
    nan = False
    for out in glob.glob(str(W / "*.json")):
        text = Path(out).read_text(errors="replace")
        if ("NaN" in text or "Infinity" in text) and not Path(out).name.startswith(("nan", "inf")):
            nan = True
            print("NaN in", out)
            os.unlink(out)
    if bad:
        counts["traceback"] += 1
        print("TRACEBACK", label, err[-300:])
    elif nan:
        counts["nan_in_output"] += 1
    elif r.returncode in (0, 2) and (r.returncode == 0 or len(lines) == 1):
        counts["clean"] += 1
    else:
        counts["exit1"] += 1
        print("OTHER", label, r.returncode, lines[-2:])
left = glob.glob(str(W / ".*.tmp")) + glob.glob(str(W / "**/.*.tmp"))
print(json.dumps(counts), "leftover temporaries:", len(left))
