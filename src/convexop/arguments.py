"""The grammar of the `convexop` command: every subcommand, option and help text (no behaviour)."""

from __future__ import annotations

import argparse
import sys

from .errors import one_line
from .studies.cli import add_study_parser


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        sys.stderr.write(f"convexop: error: {one_line(message)}\n")
        raise SystemExit(2)


FAMILY_HELP = "the family file of a run trained on one, when the run folder or the file has moved (checked " \
              "against the recorded sha256 before it runs)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="convexop", description="Learned solution operators for families of convex programs.")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (also: environment variable CONVEXOP_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("families", help="list families, their parameters and domains")
    p = sub.add_parser("generate", help="draw instances and solve them with the reference")
    p.add_argument("family")
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--law", default="train")
    p.add_argument("--out", required=True)
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.add_argument("--shard", metavar="I/K",
                   help="solve only the I-th of K contiguous slices (I from 0); join them with `merge`")
    p.add_argument("--drop-infeasible", action="store_true",
                   help="leave out drawn instances whose constraints admit no point or whose objective is proven "
                        "unbounded below (counted in the data set's attributes dropped_infeasible and "
                        "dropped_unbounded); without it they are refused")
    p = sub.add_parser("merge", help="join the shards of `generate --shard I/K` into one data set")
    p.add_argument("out", metavar="OUT.h5")
    p.add_argument("shards", nargs="+", metavar="SHARD")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p = sub.add_parser("train", help="train a model on a family (under torchrun: data-parallel)",
                       epilog="`convexop train FAMILY --show-config` prints every --set key with its default "
                              "(family, model and training settings) and exits.")
    p.add_argument("family")
    p.add_argument("--model", default=None, help="geo (default; qp-dc3 and qp-dc3-1000: geo-gradient), "
                   "geo-gradient, deeponet, fno or mlp")
    p.add_argument("--out", help="the run folder (required unless --show-config)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting; see --show-config for the keys and their defaults")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--show-config", action="store_true",
                   help="print every setting with its resolved value (defaults and --set) and exit")
    p = sub.add_parser("evaluate", help="score a run on its test set")
    p.add_argument("run_dir")
    p.add_argument("--family", dest="family_file", metavar="FILE.py:NAME", help=FAMILY_HELP)
    p.add_argument("--out")
    p = sub.add_parser("solve", help="answer new instances with a trained run")
    p.add_argument("run_dir")
    p.add_argument("--family", dest="family_file", metavar="FILE.py:NAME", help=FAMILY_HELP)
    p.add_argument("--instances", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--polish", type=float, metavar="TOL",
                   help="polish exact families' answers until their certificate is <= TOL (status optimal)")
    p.add_argument("--tol", type=float, default=1e-6, metavar="TOL",
                   help="certification tolerance of unpolished answers: status optimal when the certificate "
                        "is <= TOL, else optimal_inaccurate (default 1e-6)")
    p.add_argument("--polish-iterations", type=int, metavar="N",
                   help="iteration budget per instance for --polish (default 10000)")
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
