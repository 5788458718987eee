import os

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)
    # one thread: tiny tensors gain nothing from two, and a loaded machine loses 10x
    torch.set_num_threads(int(os.environ.get("CONVEXOP_TEST_THREADS", "1")))
