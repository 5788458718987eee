"""The `convexop` command. Parsing, progress bars and exit codes only: 0 ok, 2 bad input, 1 internal."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from .arguments import build_parser
from .errors import InputError, one_line, user_code_location
from .studies.cli import run_study


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

    state = {"last": 0, "bar": None}

    def callback(row):  # the bar appears with the first evaluation, after every input check passed
        if row.get("event") == "rollback":
            message = (f"convexop: {row['reason']} at step {row['step']}: rolled back to step {row['to_step']}, "
                       f"learning rate halved to {row['lr']:.3g} (roll-back {row['rollbacks']})")
            (state["bar"].write if state["bar"] is not None else lambda text: sys.stderr.write(text + "\n"))(message)
            return
        if state["bar"] is None:  # started at the first evaluation's step, so its rate counts only later steps
            state["bar"] = tqdm(total=total, initial=row["step"], desc=desc, unit="step", dynamic_ncols=True,
                                file=sys.stderr)
            state["last"] = row["step"]
        bar = state["bar"]
        bar.update(row["step"] - state["last"])
        state["last"] = row["step"]
        bar.set_postfix(train=f"{row['train_mse']:.2e}", test=f"{row['test_mse']:.2e}")
        if row["step"] >= total:
            bar.close()

    return callback


def cmd_families(args) -> int:
    from .families import FAMILIES, get_family
    from .families.loading import entry_point_names

    for name in list(FAMILIES) + entry_point_names():
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
    from .shards import parse_shard

    family = get_family(args.family)
    if not 1 <= args.n <= data.MAX_INSTANCES:
        raise InputError("--n", args.n, f"integers in [1, {data.MAX_INSTANCES}] (split larger sets with --shard)")
    if not 0 <= args.seed <= data.MAX_SEED:
        raise InputError("--seed", args.seed, f"integers in [0, {data.MAX_SEED}]")
    shard = None if args.shard is None else parse_shard(args.shard)
    if shard is not None and shard[1] > args.n:
        raise InputError("--shard", args.shard, f"i/k with 0 <= i < k <= --n = {args.n}")
    path = data.check_output_path(args.out, args.force)
    if args.law not in family.laws:
        raise InputError("--law", args.law, "one of " + ", ".join(family.laws))
    count = args.n if shard is None else (shard[0] + 1) * args.n // shard[1] - shard[0] * args.n // shard[1]
    with tqdm(total=count, desc=f"solving {family.name}", unit="inst", file=sys.stderr, dynamic_ncols=True) as bar:
        dataset = data.generate(family, args.n, args.seed, args.law, progress=bar.update, shard=shard,
                                    drop_infeasible=args.drop_infeasible)
    digest = data.write_dataset(path, dataset)
    part = "" if shard is None else f" (shard {shard[0]}/{shard[1]}: instances {dataset.attrs['shard_offset']}.." \
                                    f"{dataset.attrs['shard_offset'] + count - 1})"
    dropped = {k: int(dataset.attrs.get(f"dropped_{k}", 0)) for k in ("infeasible", "unbounded")}
    left_out = ", ".join(f"{v} {k}" for k, v in dropped.items() if v)
    print(f"wrote {path}: {len(dataset.params)} of {args.n} instances{part} of {family.name} (law {args.law}, "
          f"seed {args.seed}{', left out: ' + left_out if left_out else ''}), "
          f"reference {dataset.attrs['reference_method']}, sha256 {digest[:16]}")
    return 0


def cmd_merge(args) -> int:
    from . import data
    from .shards import merge_files

    path = data.check_output_path(args.out, args.force)
    resolved = {Path(p).resolve() for p in args.shards}
    if path.resolve() in resolved:
        raise InputError("OUT", str(path), "", "is one of the shards; give a new file name")
    merged, digest = merge_files(path, args.shards)
    print(f"merged {len(args.shards)} shards -> {path}: {len(merged.params)} instances of "
          f"{merged.attrs['family']} (seed {merged.attrs['seed']}), sha256 {digest[:16]}")
    return 0


def _check_run_folder(out: Path) -> None:
    """A new run goes into a missing or empty folder (missing folders above it are made) or replaces a
    run killed before its first checkpoint, and never into one another train is writing."""
    from .training.run import LOCK_NAME, lock_holder, unfinished_run

    if "\x00" in str(out):
        raise InputError("--out", str(out), "", "not a usable path (embedded NUL byte)")
    try:
        exists, is_dir, parent_ok = out.exists(), out.is_dir(), out.parent.is_dir()
    except (ValueError, OSError) as error:
        raise InputError("--out", str(out), "", f"not a usable path ({error})") from None
    if exists and not is_dir:
        raise InputError("--out", str(out), "", "is a file; a run needs a folder")
    holder = lock_holder(out) if is_dir else None
    if holder is not None:
        who = f"process {holder}" if holder else "another process"
        raise InputError("--out", str(out), "", f"run directory is in use by {who} ({LOCK_NAME}: a train writing it)")
    if exists and any(out.iterdir()) and not unfinished_run(out):
        raise InputError("--out", str(out), "", "run directory exists and is not empty (use --resume)")
    if not parent_ok:  # missing folders above the run are made, as `mkdir -p` would: under an existing folder
        ancestor = next((a for a in out.parents if a.exists()), None)
        if ancestor is None or not ancestor.is_dir():
            raise InputError("--out", str(out), "", f"folder {ancestor or out.parent} is not a folder")
        if not os.access(ancestor, os.W_OK):
            raise InputError("--out", str(out), "", f"folder {ancestor} is not writable")


def cmd_train(args) -> int:
    from .families import FAMILIES, get_family
    from .families.loading import canonical_name, is_file_spec
    from .training import distributed
    from .training.config import default_model, resolve_config
    from .training.run import load_config, train_run

    if args.show_config:
        return _show_config(args)
    if args.out is None:
        raise InputError("--out", None, "", "required: the run folder (or --show-config to see the settings)")
    out = Path(args.out)
    family = None  # a built-in family is built once, by train_run, from the resolved config
    if args.resume:
        config = load_config(out)
        moved = is_file_spec(args.family) and is_file_spec(config.family)  # same file by its sha256, see _family_file
        if canonical_name(args.family) != config.family and not moved:
            raise InputError("family", args.family, "", f"the run in {out} trains {config.family}")
        if args.model is not None and args.model != config.model:
            raise InputError("--model", args.model, "", f"the run in {out} trains {config.model}")
        if args.set:
            raise InputError("--set", args.set[0], "", "a resumed run keeps its config.json settings")
    else:
        built_in = isinstance(args.family, str) and args.family in FAMILIES
        family = None if built_in else get_family(args.family)  # a family file or entry point: its object
        family_arg = FAMILIES[args.family] if built_in else family
        config = resolve_config(family_arg, args.model or default_model(family_arg), _overrides(args.set))
        if distributed.world_size() == 1 or os.environ.get("RANK", "0") == "0":
            _check_run_folder(out)  # other ranks start once rank 0 may have created it
    main_process = os.environ.get("RANK", "0") == "0"
    callback = _progress_callback(config.training.steps, f"train {config.model} on {config.family}") \
        if main_process else None
    _, history = train_run(config, out, resume=args.resume, callback=callback, family=family)
    last = history[-1]
    if main_process:
        world = distributed.world_size()
        processes = f" on {world} processes" if world > 1 else ""
        print(f"trained {config.model} on {config.family}{processes}: {last['step']} steps, "
              f"train MSE {last['train_mse']:.3e}, test MSE {last['test_mse']:.3e}, "
              f"test relative L2 {100 * last['test_relative_l2']:.2f}% -> {out}")
    return 0


def _show_config(args) -> int:
    """Every --set key of `train FAMILY --model M` with its resolved value (and the type it parses to)."""
    from .families import FAMILIES, get_family
    from .training.config import default_model, describe_config, resolve_config

    built_in = isinstance(args.family, str) and args.family in FAMILIES
    family_arg = FAMILIES[args.family] if built_in else get_family(args.family)
    config = resolve_config(family_arg, args.model or default_model(family_arg), _overrides(args.set))
    for line in describe_config(config):
        print(line)
    return 0


def cmd_evaluate(args) -> int:
    from .data import check_output_path
    from .evaluation.metrics import evaluate_run, metrics_table

    if args.out is not None:
        check_output_path(args.out, force=True)
    metrics = evaluate_run(args.run_dir, args.out)
    for line in metrics_table(metrics):
        print(line)
    print(f"-> {args.out or Path(args.run_dir) / 'metrics.json'}")
    return 0


def cmd_solve(args) -> int:
    from .data import check_output_path
    from .families import get_family
    from .models.base import from_checkpoint
    from .serving.answers import check_tolerance
    from .serving.polish import check_polishable
    from .serving.solve import solve_file
    from .solvers.polish import DEFAULT_ITERATIONS, check_polish_settings
    from .training.run import load_config

    config = load_config(Path(args.run_dir))
    family = get_family(config.family, **config.family_config)
    out = check_output_path(args.out, force=True)
    if args.polish is None and args.polish_iterations is not None:
        raise InputError("--polish-iterations", args.polish_iterations, "", "only meaningful with --polish TOL")
    if args.polish is not None:
        check_polishable(family)
        check_polish_settings(args.polish,
                              DEFAULT_ITERATIONS if args.polish_iterations is None else args.polish_iterations)
    check_tolerance(args.tol)
    model = from_checkpoint(args.run_dir, family=family)
    budget = DEFAULT_ITERATIONS if args.polish_iterations is None else args.polish_iterations
    summary = solve_file(model, args.instances, out, start=args.start, polish_tol=args.polish,
                         polish_iterations=budget, tol=args.tol)  # batches in, batches out: bounded memory
    n, counts = summary["n"], summary["status"]
    tally = ", ".join(f"{counts[k]} {k}" for k in sorted(counts))
    if args.polish is None:
        print(f"solved {n} instances ({tally}) -> {out}")
    else:
        print(f"solved {n} instances, polished to certificate <= {args.polish:g} ({tally}; "
              f"{summary['iterations']} polish iterations in all) -> {out}")
        missed = counts.get("optimal_inaccurate", 0)
        if missed:
            sys.stderr.write(f"convexop: warning: {missed} of {n} instances stayed above {args.polish:g} within "
                             f"{budget} iterations (status optimal_inaccurate)\n")
    if counts.get("error", 0):
        sys.stderr.write(f"convexop: warning: {counts['error']} of {n} answers are non-finite (status error, "
                         "values null; see their reason)\n")
    return 0


def cmd_demo(args) -> int:
    from .evaluation.demo import run_demo, table_rows
    from .families import HeatPDE
    from .training.config import resolve_config

    out = Path(args.out)
    steps = resolve_config(HeatPDE, "geo", _overrides(args.set)).training.steps
    if "\x00" in str(out):
        raise InputError("--out", str(out), "", "not a usable path (embedded NUL byte)")
    try:
        exists, is_dir = out.exists(), out.is_dir()
    except (ValueError, OSError) as error:
        raise InputError("--out", str(out), "", f"not a usable path ({error})") from None
    if exists and not is_dir:
        raise InputError("--out", str(out), "", "is a file; the demo writes a folder")
    if exists and any(out.iterdir()):
        if not (out / "config.json").is_file():  # never delete a folder the demo did not write
            raise InputError("--out", str(out), "", "exists and is not an earlier demo run; "
                             "give a new or empty folder")
        shutil.rmtree(out)
    metrics = run_demo(out, _overrides(args.set), callback=_progress_callback(steps, "demo: GEO on heat-pde"))
    rows = table_rows(metrics)
    width = max(len(r[0]) for r in rows)
    print("\nGEO on heat-pde (test = 100 held-out nu; reference: split-step Fourier solver, error <= 1e-5)")
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    print("plots: " + ", ".join(metrics["plots"]))
    return 0


def cmd_bench(args) -> int:
    from .bench.runner import run_bench

    only = [name.strip() for name in args.only.split(",")] if args.only else None
    results = run_bench(args.out, quick=args.quick, only=only,
                        callback=lambda name: print(f"bench: {name} ...", flush=True))
    print((Path(args.out) / "RESULTS.md").read_text())
    missed = [r for r in results["rows"] if r["met"] is False]
    print(f"{len(missed)} target(s) missed" if missed else "all targets met")
    return 0


def _family_file(args):
    """Where a moved run finds its family file: `--family FILE.py:NAME` of solve and evaluate, or the
    FILE.py:NAME of `train --resume` (the recorded sha256 is checked before the file runs)."""
    from contextlib import nullcontext

    from .families.loading import family_file_override, is_file_spec

    if getattr(args, "family_file", None) is not None:
        return family_file_override(args.family_file)
    if args.command == "train" and args.resume and is_file_spec(args.family):
        return family_file_override(args.family, "family")
    return nullcontext()


COMMANDS = {"families": cmd_families, "generate": cmd_generate, "merge": cmd_merge, "train": cmd_train,
            "evaluate": cmd_evaluate, "solve": cmd_solve, "demo": cmd_demo, "bench": cmd_bench}


COMMANDS["study"] = run_study


class Terminated(BaseException):
    """SIGTERM: unwinds like Ctrl-C, so every temporary file of this process is removed."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    from .training.trainer import TrainingDiverged

    try:
        with _family_file(args):
            return COMMANDS[args.command](args)
    except InputError as error:
        sys.stderr.write(f"convexop: error: {error}\n")
        return 2
    except TrainingDiverged as error:
        sys.stderr.write(f"convexop: training diverged: {one_line(str(error))}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("convexop: interrupted\n")
        return 130
    except Terminated:
        sys.stderr.write("convexop: terminated\n")
        return 143
    except SystemExit as error:  # user code (a family file, a sampler) called sys.exit
        sys.stderr.write(f"convexop: error: user code called sys.exit({error.code!r}) while {args.command} ran; "
                         "nothing was written\n")
        return 2
    except BrokenPipeError:  # the reader went away (e.g. `| head`): nothing left to say
        _silence_stdout()
        return 0
    except Exception as error:  # noqa: BLE001  (any other error: one line; the traceback with --debug)
        if _debug(args):
            import traceback

            traceback.print_exc()
        user = user_code_location(error)
        if user is not None:
            sys.stderr.write(f"convexop: error: {user}: raised {type(error).__name__}: "
                             f"{one_line(str(error))}{'' if _debug(args) else ' (--debug shows the traceback)'}\n")
            return 2
        if isinstance(error, OSError):
            where = f"{error.filename}: " if error.filename else ""
            sys.stderr.write(f"convexop: error: {one_line(where + (error.strerror or str(error)))}\n")
            return 2
        sys.stderr.write(f"convexop: internal error: {type(error).__name__}: {one_line(str(error))}"
                         f"{'' if _debug(args) else ' (--debug shows the traceback)'}\n")
        return 1


def _debug(args) -> bool:
    return bool(getattr(args, "debug", False)) or os.environ.get("CONVEXOP_DEBUG", "") not in ("", "0")


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass


if __name__ == "__main__":
    raise SystemExit(main())
