import os
import textwrap

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)
    # one thread: tiny tensors gain nothing from two, and a loaded machine loses 10x
    torch.set_num_threads(int(os.environ.get("CONVEXOP_TEST_THREADS", "1")))


# a small family file (`FILE.py:family`: a from_torch box-clipped quadratic) for file-family tests
CLIPPED_FAMILY = textwrap.dedent('''
    import torch
    import convexop
    from convexop.prox import Box

    def g(x, theta):
        return 0.5 * ((x - theta["c"]) ** 2).sum(-1) + 0.1 * (x ** 2).sum(-1)

    family = convexop.from_torch(g, Box(-0.5, 0.5), variables={"x": 3}, parameters={"c": 3},
                                 sampler={"c": (-1.0, 1.0)}, name="clipped",
                                 lipschitz=lambda theta: torch.full((len(theta["c"]),), 1.2))
''')
