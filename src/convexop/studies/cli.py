"""`convexop study width|radius ...`: parsing, progress and the printed verdicts (the work is in
studies/width.py and studies/radius.py). Wired into cli.py by `add_study_parser(sub)` and COMMANDS["study"]."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import InputError
from ..families import operator_learning

PROBLEMS = operator_learning.OPERATOR_PROBLEMS
MODELS = ("deeponet", "fno")


def add_study_parser(subparsers) -> None:
    study = subparsers.add_parser("study", help="studies of the baselines (seed 001): width, radius")
    kinds = study.add_subparsers(dest="study", required=True, parser_class=type(study))
    p = kinds.add_parser("width", help="train each width with the same data, seed, Adam and budget; "
                                       "record loss, gradient norm, distance from init, Hessian norm")
    p.add_argument("--model", default="all", help="deeponet, fno, a comma-separated list or all (default)")
    p.add_argument("--problem", default="all",
                   help=", ".join(PROBLEMS) + ", a comma-separated list or all (default)")
    p.add_argument("--widths", help="comma-separated widths, e.g. 10,50,100,200,500 (default: the preset's)")
    p.add_argument("--quick", action="store_true", help="small budgets: all six pairs in <= 20 min on 2 cores")
    p.add_argument("--steps", type=int, help="Adam iterations per width")
    p.add_argument("--lr", type=float, help="Adam learning rate (default 1e-3)")
    p.add_argument("--n-train", type=int, help="training functions (full batch)")
    p.add_argument("--n-test", type=int, help="test functions")
    p.add_argument("--seed", type=int, default=0, help="initialisation seed (the data seed is 1)")
    p.add_argument("--scaling", choices=("ntk", "standard"), help="layer scaling (default ntk)")
    p.add_argument("--activation", choices=("tanh", "softplus", "gelu", "relu"))
    p.add_argument("--hessian-every", type=int, help="iterations between Hessian estimates (default steps/10)")
    p.add_argument("--hessian-iterations", type=int, help="power iterations per estimate (default 10; 0 off)")
    p.add_argument("--hessian-blocks", type=int, metavar="N",
                   help="also the spectral norms of the Hessian blocks (DeepONet branch/trunk, FNO spectral/"
                        "pointwise and the cross block) at the same checkpoints, N power iterations each "
                        "(e.g. 20; default 0: off)")
    p.add_argument("--hessian-batch", type=int, help="training functions in the fixed batch of --hessian-blocks "
                                                     "(default 32)")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--force", action="store_true", help="write into an existing, non-empty folder")
    p = kinds.add_parser("radius", help="per width: train, perturb by a random Euclidean step rho, bisect the "
                                        "largest rho from which a few more Adam steps recover the trained loss; "
                                        "fit rho against width")
    p.add_argument("--model", default="deeponet", help="deeponet (default) or fno")
    p.add_argument("--problem", default="antiderivative", help=", ".join(PROBLEMS) + " (default antiderivative)")
    p.add_argument("--widths", help="comma-separated widths (default: the width study's quick preset)")
    p.add_argument("--seeds", default="0", help="comma-separated initialisation seeds (default 0)")
    p.add_argument("--steps", type=int, help="Adam iterations to the trained point (default: the quick preset's)")
    p.add_argument("--lr", type=float, help="Adam learning rate (default 1e-3)")
    p.add_argument("--n-train", type=int, help="training functions (full batch)")
    p.add_argument("--probe-steps", type=int, help="Adam steps from the perturbed point (default 20)")
    p.add_argument("--margin", type=float, help="recovered: loss after the probe <= (1 + margin) x trained loss "
                                                "(default 0.1)")
    p.add_argument("--rho-min", type=float, help="lower end of the bisection (default 1e-3)")
    p.add_argument("--rho-max", type=float, help="upper end of the bisection (default 1e4)")
    p.add_argument("--bisections", type=int, help="bisection steps in log(rho) (default 10)")
    p.add_argument("--draws", type=int, help="random directions per width and seed (default 1)")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--force", action="store_true", help="write into an existing, non-empty folder")


def _choices(text: str, allowed: tuple[str, ...], field: str) -> list[str]:
    if text == "all":
        return list(allowed)
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names or any(n not in allowed for n in names):
        raise InputError(field, text, "one of " + ", ".join(allowed) + ", a comma-separated list of them, or all")
    return names


def parse_widths(text: str) -> list[int]:
    """'10,50,100' -> [10, 50, 100] (sorted, unique); anything else is an InputError."""
    try:
        widths = [int(part) for part in text.split(",")]
    except ValueError:
        widths = []
    if not widths or any(w < 1 or w > 4096 for w in widths):
        raise InputError("--widths", text, "comma-separated integers in [1, 4096], e.g. 10,50,100,200,500")
    return sorted(set(widths))


def build_settings(args) -> list:
    from .width import preset

    models = _choices(args.model, MODELS, "--model")
    problems = _choices(args.problem, PROBLEMS, "--problem")
    widths = parse_widths(args.widths) if args.widths is not None else None
    settings_list = []
    for model in models:
        for problem in problems:
            s = preset(model, problem, args.quick)
            if widths is not None:
                s.widths = widths
            if args.steps is not None:
                s.steps = args.steps
                s.hessian_every = max(1, args.steps // 10)
            for attribute, value in (("lr", args.lr), ("n_train", args.n_train), ("n_test", args.n_test),
                                     ("hessian_every", args.hessian_every),
                                     ("hessian_iterations", args.hessian_iterations),
                                     ("hessian_blocks", args.hessian_blocks), ("hessian_batch", args.hessian_batch)):
                if value is not None:
                    setattr(s, attribute, value)
            s.seed = args.seed
            if args.scaling is not None:
                s.model_kwargs["scaling"] = args.scaling
            if args.activation is not None:
                s.model_kwargs["activation"] = args.activation
            s.validate()
            settings_list.append(s)
    return settings_list


def _check_out(args) -> Path:
    out = Path(args.out)
    if "\x00" in args.out:
        raise InputError("--out", args.out, "", "not a usable path (embedded NUL byte)")
    if not out.parent.is_dir():
        raise InputError("--out", str(out), "", f"folder {out.parent} does not exist")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not args.force)):
        raise InputError("--out", str(out), "", "exists and is not an empty folder (use --force)")
    return out


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2] (sorted, unique); anything else is an InputError."""
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        seeds = []
    if not seeds or any(s < 0 or s >= 2**31 for s in seeds):
        raise InputError("--seeds", text, "comma-separated integers in [0, 2^31), e.g. 0,1,2")
    return sorted(set(seeds))


def build_radius_settings(args):
    from .radius import radius_preset

    if args.model not in MODELS:
        raise InputError("--model", args.model, "one of " + ", ".join(MODELS) + " (one model per radius study)")
    if args.problem not in PROBLEMS:
        raise InputError("--problem", args.problem, "one of " + ", ".join(PROBLEMS) + " (one problem per radius study)")
    settings = radius_preset(args.model, args.problem)
    if args.widths is not None:
        settings.widths = parse_widths(args.widths)
    settings.seeds = parse_seeds(args.seeds)
    for attribute in ("steps", "lr", "n_train", "probe_steps", "margin", "rho_min", "rho_max", "bisections", "draws"):
        value = getattr(args, attribute)
        if value is not None:
            setattr(settings, attribute, value)
    settings.validate()
    return settings


def run_radius(args) -> int:
    from .radius import run_radius_study

    settings = build_radius_settings(args)
    out = _check_out(args)

    def progress(event):
        if event.get("event") == "data":
            sys.stderr.write(f"radius: data for {event['problem']} ...\n")
        elif event.get("event") == "done":
            mark = f" (censored {event['censored']})" if event["censored"] else ""
            sys.stderr.write(f"radius: width {event['width']} seed {event['seed']}: trained loss "
                             f"{event['trained_loss']:.3g}, rho {event['rho']:.4g}{mark}, {event['seconds']:.0f} s\n")

    result = run_radius_study(settings, out, callback=progress)
    print("width  parameters  trained_loss  rho  rho/||theta||")
    for row in result["table"]:
        print(f"{row['width']:5d}  {row['parameters']:10d}  {row['trained_loss']:.3e}  {row['rho']:.4g}"
              f"{' (censored)' if row['censored'] else ''}  {row['relative_rho']:.3g}")
    print(f"{settings.model} on {settings.problem}: {result['text']}")
    print(f"wrote {out / 'radius.json'} and {out / 'plots' / 'radius_vs_width.png'}")
    return 0


def run_study(args) -> int:
    if args.study == "radius":
        return run_radius(args)
    from tqdm import tqdm

    from .width import run_width_study

    settings_list = build_settings(args)
    out = _check_out(args)
    state = {"bar": None, "last": 0}

    def progress(event):
        if event.get("event") == "data":
            sys.stderr.write(f"study: data for {event['problem']} ...\n")
        elif event.get("event") == "width":
            if state["bar"] is not None:
                state["bar"].close()
            description = f"{event['model']}/{event['problem']} width {event['width']}"
            state["bar"] = tqdm(total=event["steps"], desc=description, unit="it", file=sys.stderr, dynamic_ncols=True)
            state["last"] = 0
        elif state["bar"] is not None:
            state["bar"].update(event["step"] - state["last"])
            state["last"] = event["step"]
            state["bar"].set_postfix(loss=f"{event['loss']:.2e}")

    summary = run_width_study(settings_list, out, callback=progress)
    if state["bar"] is not None:
        state["bar"].close()
    for pair in summary["pairs"]:
        seconds = sum(pair["seconds"].values())
        print(f"{pair['model']} on {pair['problem']} ({seconds:.0f} s): {pair['verdict']['text']}")
        blocks = pair["verdict"].get("hessian_blocks")
        if blocks:
            names = blocks["names"]
            print(f"  Hessian blocks at the end ({names['a']}, {names['b']}, {names['ab']}; "
                  f"{sum(blocks['seconds']):.0f} s of the run):")
            for i, width in enumerate(pair["verdict"]["widths"]):
                print(f"  width {width}: " + ", ".join(f"{blocks['final'][k][i]:.3e}" for k in ("a", "b", "ab")))
    print(f"wrote {out / 'summary.json'}, {out / 'curves.json'}, {out / 'curves.csv'} "
          f"and {len(summary['plots'])} plots")
    return 0
