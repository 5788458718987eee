"""`convexop study width ...`: parsing, progress and the printed verdicts (the work is in
studies/width.py). Wired into cli.py by `add_study_parser(sub)` and COMMANDS["study"]."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import InputError
from ..families import operator_learning

PROBLEMS = operator_learning.OPERATOR_PROBLEMS
MODELS = ("deeponet", "fno")


def add_study_parser(subparsers) -> None:
    study = subparsers.add_parser("study", help="studies of the baselines (seed 001): width")
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
                                     ("hessian_iterations", args.hessian_iterations)):
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


def run_study(args) -> int:
    from tqdm import tqdm

    from .width import run_width_study

    settings_list = build_settings(args)
    out = Path(args.out)
    if not out.parent.is_dir():
        raise InputError("--out", str(out), "", f"folder {out.parent} does not exist")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not args.force)):
        raise InputError("--out", str(out), "", "exists and is not an empty folder (use --force)")
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
    print(f"wrote {out / 'summary.json'}, {out / 'curves.json'}, {out / 'curves.csv'} "
          f"and {len(summary['plots'])} plots")
    return 0
