"""Ranking tests run thousands of tiny matrix products: one thread each (with two threads on a
busy 2-core machine a 2x5 @ 5x21 product was measured waiting 16 ms for the second thread)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
