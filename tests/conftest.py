import os

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)
    # two threads on the 2-core CI machine; CONVEXOP_TEST_THREADS=1 on a loaded one
    torch.set_num_threads(int(os.environ.get("CONVEXOP_TEST_THREADS", "2")))
