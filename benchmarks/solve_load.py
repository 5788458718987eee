"""Load benchmark: `convexop solve` on 100,000 toy-box instances, peak memory and throughput.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/solve_load.py --out runs/solve-load [--n 100000]
        [--in-memory]

Trains a small GEO on toy-box (skipped when OUT/run exists), writes OUT/in.json with --n instances
drawn from the training law (written a batch at a time), then runs `python -m convexop solve` in a
child process and reports its peak resident memory (ru_maxrss of the child) and instances per
second (wall clock of the whole command, start-up included, and of the solve alone). With
--in-memory it also runs, in another child, the former whole-file path (json.load the file,
solve_instances on everything, json.dumps the result) for comparison. Each child imports torch;
`import torch` alone is measured too, as the floor of the peak RSS. Writes OUT/solve_load.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TRAIN = ["--set", "steps=200", "--set", "n_instances=500", "--set", "depth=4", "--set", "width=6",
         "--set", "batch_size=64", "--set", "eval_every=100", "--set", "tensorboard=false"]

IN_MEMORY = """
import json, sys, time
from convexop.serving.solve import solve_instances
from convexop.families import get_family
from convexop.models.base import from_checkpoint
started = time.perf_counter()
instances = json.load(open(sys.argv[2]))["instances"]
model = from_checkpoint(sys.argv[1], family=get_family("toy-box"))
result = solve_instances(model, instances)
open(sys.argv[3], "w").write(json.dumps(result))
print(time.perf_counter() - started)
"""


def child(command: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS of that child in MiB, stdout) of one command in a fresh process."""
    import tempfile

    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr,
                                   env=os.environ | {"OMP_NUM_THREADS": "1"})
        _, status, usage = os.wait4(process.pid, 0)  # this child's own resource usage
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        if process.returncode != 0:
            raise SystemExit(f"failed ({process.returncode}): {' '.join(command)}\n{stderr.read()[-2000:]}")
        return wall, usage.ru_maxrss / 1024.0, stdout.read()


def write_instances(path: Path, n: int, seed: int = 0, batch: int = 10_000) -> None:
    from convexop.families import get_family

    family = get_family("toy-box")
    rng = np.random.default_rng(seed)
    with open(path, "w") as stream:
        stream.write('{"instances": [')
        for start in range(0, n, batch):
            theta = family.sample(min(batch, n - start), rng, "train")
            rows = (json.dumps(family.instance_from_theta(row)) for row in theta)
            stream.write((", " if start else "") + ", ".join(rows))
        stream.write("]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/solve-load")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--in-memory", action="store_true", help="also measure the whole-file path")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run = out / "run"
    python = sys.executable
    if not (run / "model.json").is_file():
        child([python, "-m", "convexop", "train", "toy-box", "--out", str(run)] + TRAIN)
    instances = out / "in.json"
    write_instances(instances, args.n)
    rows = {}
    wall, rss, _ = child([python, "-c", "import torch, convexop.cli"])
    rows["import torch + convexop (floor)"] = {"seconds": wall, "peak_rss_mib": rss}
    wall, rss, _ = child([python, "-m", "convexop", "solve", str(run), "--instances", str(instances),
                          "--out", str(out / "out.json")])
    rows["convexop solve (streamed)"] = {"seconds": wall, "peak_rss_mib": rss,
                                         "instances_per_second": args.n / wall}
    if args.in_memory:
        wall, rss, _ = child([python, "-c", IN_MEMORY, str(run), str(instances), str(out / "out_memory.json")])
        rows["whole-file json.load + json.dumps"] = {"seconds": wall, "peak_rss_mib": rss,
                                                     "instances_per_second": args.n / wall}
        same = (out / "out.json").read_bytes() == (out / "out_memory.json").read_bytes()
        rows["whole-file json.load + json.dumps"]["same_output"] = same
    report = {"n": args.n, "in_json_mib": instances.stat().st_size / 2**20,
              "out_json_mib": (out / "out.json").stat().st_size / 2**20, "rows": rows,
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                         f"python {platform.python_version()}, OMP_NUM_THREADS=1"}
    (out / "solve_load.json").write_text(json.dumps(report, indent=2))
    print(f"{args.n} toy-box instances: IN.json {report['in_json_mib']:.1f} MiB, "
          f"OUT.json {report['out_json_mib']:.1f} MiB ({report['machine']})")
    for name, row in rows.items():
        rate = f", {row['instances_per_second']:,.0f} instances/s" if "instances_per_second" in row else ""
        print(f"  {name:<36} {row['seconds']:7.1f} s, peak RSS {row['peak_rss_mib']:7.1f} MiB{rate}")


if __name__ == "__main__":
    main()
