"""Our Anderson/Picard solvers against torchdeq 0.1.0 (optional: `pip install --no-deps torchdeq`) on the
fixed point of a trained equilibrium GEO layer (heat-pde). Usage:

    python benchmarks/torchdeq_comparison.py RUN_DIR

RUN_DIR: a heat-pde run trained with --set mode=equilibrium. Prints iterations, wall time, final
residual and the distance between the two solutions, for the same memory; torchdeq stops on the
norm of the whole batch residual, so its tolerance is scaled by sqrt(batch) to match ours per sample.
"""

import sys
import time

import numpy as np
import torch

from convexop.families import get_family
from convexop.models.base import from_checkpoint
from convexop.solvers.fixed_point import anderson, picard
from convexop.training.run import load_config


def main(run_dir: str) -> None:
    torch.set_num_threads(1)
    config = load_config(__import__("pathlib").Path(run_dir))
    family = get_family(config.family, **config.family_config)
    model = from_checkpoint(run_dir, family=family).double().eval()
    theta = torch.as_tensor(family.sample(400, np.random.default_rng(0)))
    x0 = torch.zeros(400, family.rank, dtype=torch.float64)

    def fn(z):
        return model.layer(0, z, theta)

    rows = []
    with torch.no_grad():
        for label, solve in (("convexop anderson m=5", lambda: anderson(fn, x0, 200, 1e-8, 0.0, memory=5)),
                             ("convexop picard", lambda: picard(fn, x0, 200, 1e-8, 0.0))):
            solve()
            started = time.perf_counter()
            x, stats = solve()
            rows.append((label, float(stats.iterations.float().mean()), time.perf_counter() - started,
                         float(stats.residual.max()), x))
        try:
            from torchdeq.solver.anderson import anderson_solver
        except ImportError:
            print("torchdeq not installed: only our solvers measured")
        else:
            def theirs():
                return anderson_solver(fn, x0, max_iter=200, tol=1e-8 * 400 ** 0.5, stop_mode="abs", m=5, lam=1e-4)
            theirs()
            started = time.perf_counter()
            x, _, info = theirs()
            seconds = time.perf_counter() - started
            residual = (fn(x) - x).norm(dim=1)
            rows.append(("torchdeq 0.1.0 anderson m=5", float(info["nstep"].float().mean()), seconds,
                         float(residual.max()), x))
    reference = rows[0][4]
    print("| solver | iterations (mean) | seconds (400 instances) | max residual | max |x - ours| |")
    print("|---|---|---|---|---|")
    for label, iterations, seconds, residual, x in rows:
        print(f"| {label} | {iterations:.1f} | {seconds:.3f} | {residual:.1e} | "
              f"{float((x - reference).abs().max()):.1e} |")


if __name__ == "__main__":
    main(sys.argv[1])
