"""bench_train_step.py --matmul: the share of a step in matrix products is read off the profiler,
not assumed: a step that is one matrix product scores near 1, one without any scores 0."""

import torch


def test_matmul_share_tells_products_from_other_work(load_script):
    bench = load_script("bench_train_step")
    a, b = torch.randn(256, 512), torch.randn(512, 512)
    batches = [None] * 4
    assert bench.matmul_share(lambda _: a @ b, batches) > 0.9
    assert bench.matmul_share(lambda _: torch.exp(a).sum(), batches) == 0.0
    rates = bench.gemm_rates(16, 8, bench.clock(1))
    assert [shape for shape, _ in rates] == ["8x16 @ 16x64", "8x128 @ 128x128", "8x128 @ 128x16"]
    assert all(rate > 0 for _, rate in rates)
