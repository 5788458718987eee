"""The `convexop` command. Parsing, progress bars and exit codes only: 0 ok, 2 bad input, 1 internal."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from .errors import InputError
from .study_cli import add_study_parser, run_study


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        sys.stderr.write(f"convexop: error: {message}\n")
        raise SystemExit(2)


def _overrides(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise InputError("--set", pair, "key=value")
        key, value = pair.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def _progress_callback(total: int, desc: str):
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True, file=sys.stderr)
    state = {"last": 0}

    def callback(row):
        bar.update(row["step"] - state["last"])
        state["last"] = row["step"]
        bar.set_postfix(train=f"{row['train_mse']:.2e}", test=f"{row['test_mse']:.2e}")
        if row["step"] >= total:
            bar.close()

    return callback


def cmd_families(args) -> int:
    from .families import Family, get_family

    for name in Family.registry:
        family = get_family(name)
        kind = "exact convex program" if family.exact else "supervised (f, g a structural prior)"
        print(f"{name}  [{kind}; rank {family.rank}; laws: {', '.join(family.laws)}]")
        for p in family.parameters:
            law = f"; training law {p.law}" if p.law else ""
            print(f"    {p.name}: {p.domain()}{law}")
    return 0


def cmd_generate(args) -> int:
    from tqdm import tqdm

    from . import data
    from .families import get_family

    family = get_family(args.family)
    if args.n < 1:
        raise InputError("--n", args.n, "integers >= 1")
    path = data.check_output_path(args.out, args.force)
    if args.law not in family.laws:
        raise InputError("--law", args.law, "one of " + ", ".join(family.laws))
    bar = tqdm(total=args.n, desc=f"solving {family.name}", unit="inst", file=sys.stderr, dynamic_ncols=True)
    dataset = data.generate(family, args.n, args.seed, args.law, progress=bar.update)
    bar.close()
    digest = data.write_dataset(path, dataset)
    print(f"wrote {path}: {args.n} instances of {family.name} (law {args.law}, seed {args.seed}), "
          f"reference {dataset.attrs['reference_method']}, sha256 {digest[:16]}")
    return 0


def cmd_train(args) -> int:
    from .families import Family, get_family
    from .training.config import resolve_config
    from .training.run import load_config, train_run

    out = Path(args.out)
    if args.resume:
        config = load_config(out)
    else:
        family_cls = type(get_family(args.family))
        config = resolve_config(family_cls, args.model, _overrides(args.set))
        if out.exists() and any(out.iterdir()):
            raise InputError("--out", str(out), "", "run directory exists and is not empty (use --resume)")
        if not out.parent.is_dir():
            raise InputError("--out", str(out), "", f"folder {out.parent} does not exist")
    assert config.family in Family.registry
    get_family(config.family, **config.family_config)  # bad family keys fail here, before the progress bar
    callback = _progress_callback(config.training.steps, f"train {config.model} on {config.family}")
    _, history = train_run(config, out, resume=args.resume, callback=callback)
    last = history[-1]
    print(f"trained {config.model} on {config.family}: {last['step']} steps, train MSE {last['train_mse']:.3e}, "
          f"test MSE {last['test_mse']:.3e}, test relative L2 {100 * last['test_relative_l2']:.2f}% -> {out}")
    return 0


def cmd_evaluate(args) -> int:
    from .evaluation.metrics import evaluate_run

    metrics = evaluate_run(args.run_dir, args.out)
    print(json.dumps({k: v for k, v in metrics.items() if k not in ("test",)} |
                     {"test": {k: v for k, v in metrics["test"].items() if k != "per_instance_mse"}}, indent=2))
    return 0


def cmd_solve(args) -> int:
    from .data import check_output_path
    from .evaluation.polish import DEFAULT_ITERATIONS, check_settings
    from .evaluation.solve import read_instances, solve_instances
    from .families import get_family
    from .models.base import atomic_write_bytes, from_checkpoint
    from .training.run import load_config

    config = load_config(Path(args.run_dir))
    family = get_family(config.family, **config.family_config)
    instances = read_instances(args.instances)
    out = check_output_path(args.out, force=True)
    if args.polish is None and args.polish_iterations is not None:
        raise InputError("--polish-iterations", args.polish_iterations, "", "only meaningful with --polish TOL")
    if args.polish is not None:
        if not family.exact:
            raise InputError("--polish", args.polish, "",
                             f"{family.name} is not an exact convex program (its target is not argmin f + g), "
                             "so there is nothing to polish towards")
        check_settings(args.polish, DEFAULT_ITERATIONS if args.polish_iterations is None else args.polish_iterations)
    model = from_checkpoint(args.run_dir, family=family)
    budget = DEFAULT_ITERATIONS if args.polish_iterations is None else args.polish_iterations
    result = solve_instances(model, instances, start=args.start, polish_tol=args.polish, polish_iterations=budget)
    atomic_write_bytes(out, json.dumps(result).encode())
    answers = result["instances"]
    if args.polish is None:
        print(f"solved {len(answers)} instances -> {out}")
        return 0
    polished = sum(a["status"] == "polished" for a in answers)
    steps = sum(a["iterations"] for a in answers)
    print(f"solved {len(answers)} instances, polished {polished} to residual <= {args.polish:g} "
          f"({steps} forward-backward steps in all) -> {out}")
    missed = len(answers) - polished
    if missed:
        sys.stderr.write(f"convexop: warning: {missed} of {len(answers)} instances not_converged within "
                         f"{budget} iterations (residual > {args.polish:g}; see their status)\n")
    return 0


def cmd_demo(args) -> int:
    from .evaluation.demo import run_demo, table_rows
    from .families import HeatPDE
    from .training.config import resolve_config

    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    steps = resolve_config(HeatPDE, "geo", _overrides(args.set)).training.steps
    metrics = run_demo(out, _overrides(args.set), callback=_progress_callback(steps, "demo: GEO on heat-pde"))
    rows = table_rows(metrics)
    width = max(len(r[0]) for r in rows)
    print("\nGEO on heat-pde (test = 100 held-out nu; reference: split-step Fourier solver, error <= 1e-5)")
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    print("plots: " + ", ".join(metrics["plots"]))
    return 0


def cmd_bench(args) -> int:
    from .evaluation.bench import run_bench

    only = [name.strip() for name in args.only.split(",")] if args.only else None
    results = run_bench(args.out, quick=args.quick, only=only,
                        callback=lambda name: print(f"bench: {name} ...", flush=True))
    print((Path(args.out) / "RESULTS.md").read_text())
    missed = [r for r in results["rows"] if r["met"] is False]
    print(f"{len(missed)} target(s) missed" if missed else "all targets met")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="convexop", description="Learned solution operators for families of convex programs.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("families", help="list families, their parameters and domains")
    p = sub.add_parser("generate", help="draw instances and solve them with the reference")
    p.add_argument("family")
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--law", default="train")
    p.add_argument("--out", required=True)
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p = sub.add_parser("train", help="train a model on a family")
    p.add_argument("family")
    p.add_argument("--model", default="geo")
    p.add_argument("--out", required=True)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--resume", action="store_true")
    p = sub.add_parser("evaluate", help="score a run on its test set")
    p.add_argument("run_dir")
    p.add_argument("--out")
    p = sub.add_parser("solve", help="answer new instances with a trained run")
    p.add_argument("run_dir")
    p.add_argument("--instances", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--polish", type=float, metavar="TOL",
                   help="polish exact families' answers until their residual is <= TOL")
    p.add_argument("--polish-iterations", type=int, metavar="N",
                   help="forward-backward budget per instance for --polish (default 10000)")
    p.add_argument("--start", choices=("zero", "random"), default="zero")
    p = sub.add_parser("demo", help="train and evaluate the default GEO on heat-pde, with plots")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p = sub.add_parser("bench", help="run the benchmarks, write results.json and RESULTS.md")
    p.add_argument("--quick", action="store_true", help="small budgets: checks the pipeline, not the targets")
    p.add_argument("--out", default="runs/bench")
    p.add_argument("--only", help="comma-separated case names")
    add_study_parser(sub)
    return parser


COMMANDS = {"families": cmd_families, "generate": cmd_generate, "train": cmd_train,
            "evaluate": cmd_evaluate, "solve": cmd_solve, "demo": cmd_demo, "bench": cmd_bench}
COMMANDS["study"] = run_study




def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .training.trainer import TrainingDiverged

    try:
        return COMMANDS[args.command](args)
    except InputError as error:
        sys.stderr.write(f"convexop: error: {error}\n")
        return 2
    except TrainingDiverged as error:
        sys.stderr.write(f"convexop: training diverged: {error}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("convexop: interrupted\n")
        return 130
    except Exception as error:  # internal error: one line, plus the traceback for a bug report
        import traceback

        traceback.print_exc()
        sys.stderr.write(f"convexop: internal error: {type(error).__name__}: {error}\n")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
