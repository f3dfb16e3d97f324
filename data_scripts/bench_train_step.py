"""Benchmark: one training step of each method of the book, as a ratio to the Combiner's step.

Builds every method's model and loss on the toy world's training features (the chapters' cache
under ``$CIRLIB_DATA_DIR``; built on first use) and times full steps (forward, loss, backward,
fit's Adam) on the same batches. The methods take turns, round after round, and each round's
ratio is taken against the Combiner of the same round, so load that comes and goes on a shared
machine hits both sides of a ratio alike; the median ratio over rounds is printed. With one
thread the clock is the process's CPU time (time spent waiting for a core does not count);
with more threads, wall time. DQE-CIR's miner refresh is timed apart and spread over the steps
between two refreshes of the profile.

    python data_scripts/bench_train_step.py [--profile toy] [--rounds 5] [--steps 4]
        [--methods combiner,mgur,cala,mapnet,dqe (any registered method)] [--threads 1]
        [--drift 50] [--softmax] [--dropout] [--matmul]

``--drift N`` trains CaLa and MAPNet for N steps twice from one seed, with the attention's
short-row softmax (:mod:`cirlib.models.short_softmax`) and with ``torch.softmax``, and prints
the largest difference of the loss: the rounding the faster kernel changes. ``--softmax`` times
the two softmax kernels by row length; ``--dropout`` the Combiner step with ``nn.Dropout`` or
cirlib's dropout and the per-tensor or fused Adam, and the dropout masks alone. ``--matmul``
asks how much faster a step could get: the share of each method's step spent in matrix
products (``torch.profiler``, self CPU time), and the rate one matrix product of the Combiner's
sizes reaches in float32 (GFLOP/s), so the table says whether the steps are bound by arithmetic
the CPU already does at speed or by overheads a rewrite could cut.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from cirlib.losses import batch_classification_loss
from cirlib.models.combiner import Combiner
from cirlib.models.dropout import dropout


def clock(threads: int):
    """CPU time of the process with one thread (robust to waiting for a core), else wall."""
    return time.process_time if threads == 1 else time.perf_counter


def best_ms(fn, steps: int, rounds: int = 3, now=time.perf_counter) -> float:
    """Fastest mean over ``rounds`` rounds of ``steps`` calls, in ms, after a warm-up."""
    for _ in range(3):
        fn()
    best = float("inf")
    for _ in range(rounds):
        start = now()
        for _ in range(steps):
            fn()
        best = min(best, (now() - start) / steps)
    return 1000 * best


# ---------------------------------------------------------------- every registered method


def toy_training_data(profile: str):
    """The profile's training split and its cached features (tokens included)."""
    from cirlib.config import resolve
    from cirlib.data.features import cached_features, encoder_id
    from cirlib.data.registry import load_splits
    from cirlib.models.backbone import load_backbone
    from cirlib.paths import subdir

    cfg = resolve(profile)
    split = load_splits(cfg)["train"]
    encoder, preprocess, tokenizer = load_backbone(
        cfg.encoder, cfg.encoder_pretrained, device="cpu"
    )
    features = cached_features(
        split,
        encoder,
        preprocess,
        tokenizer,
        encoder=encoder_id(cfg.encoder, cfg.encoder_pretrained),
        cache_dir=subdir("features"),
        tokens=True,
    )
    return cfg, split, features


def method_steps(cfg, split, features) -> dict:
    """``name -> build()`` for every registered method (``cirlib.methods.registered()``, so a
    new method is timed by being registered); ``build()`` returns ``(model, loss_fn)`` as the
    chapters' main runs train them (the chapter's settings under ``cfg``), seeded alike. Losses
    with a schedule are timed from their second epoch on (MGUR: both of its terms run), and a
    miner is never refreshed while timed (its refresh is timed apart: DQE-CIR below)."""
    from cirlib.methods import registered
    from cirlib.train import TrainingRun

    def builder(spec):
        def build():
            settings = spec.settings_for(cfg)
            if spec.complete is not None:
                settings = spec.complete(features, settings)
            torch.manual_seed(0)
            model = spec.build(features, settings)
            run = TrainingRun(
                epochs=cfg.epochs, batches_per_epoch=10**9, start_epoch=1, seed=0, split=split
            )
            return model, spec.loss(features, settings, run)

        return build

    return {name: builder(spec) for name, spec in registered().items()}


def make_step(model, loss_fn):
    """One training step as :func:`cirlib.train.fit` takes it (Adam, fused where it can be)."""
    from cirlib.train import _fused_adam_ok

    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=_fused_adam_ok(model))
    model.train()

    def step(idx):
        loss = loss_fn(model, idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach().item()

    return step


def dqe_refresh_share(cfg, split, features, build, now) -> tuple[float, float]:
    """Seconds of one DQE-CIR miner refresh, and that time per training step of the profile."""
    from cirlib.methods.dqe import DQESettings, build_miner, refresh_miner

    model, _ = build()
    settings = DQESettings()
    miner = build_miner(features, split, settings, 0)
    refresh_miner(model, miner, features, epoch=0)  # warm-up
    start = now()
    refresh_miner(model, miner, features, epoch=settings.refresh_every)
    seconds = now() - start
    steps_per_epoch = max(1, len(features.texts) // cfg.batch_size)
    refreshes = 1 + (cfg.epochs - 1) // settings.refresh_every if settings.refresh_every else 1
    return seconds, seconds * refreshes / (cfg.epochs * steps_per_epoch)


def table_setup(args, batches: int, need_combiner: bool):
    """The profile's features, ``--methods``' step builders and ``batches`` seeded batches,
    shared by the tables below: ``(cfg, split, features, builders, names, batch list)``."""
    cfg, split, features = toy_training_data(args.profile)
    cfg = dataclasses.replace(cfg, batch_size=args.batch or cfg.batch_size)
    builders = method_steps(cfg, split, features)
    names = args.methods.split(",")
    if set(names) - set(builders) or (need_combiner and "combiner" not in names):
        extra = ", the Combiner included" if need_combiner else ""
        raise SystemExit(f"--methods: choose from {sorted(builders)}{extra}")
    gen = torch.Generator().manual_seed(0)
    n = len(features.texts)
    order = [torch.randperm(n, generator=gen)[: cfg.batch_size] for _ in range(batches)]
    return cfg, split, features, builders, names, order


def methods_table(args) -> None:
    now = clock(args.threads)
    cfg, split, features, builders, names, batches = table_setup(args, args.steps, True)
    n = len(features.texts)
    steps = {}
    for name in names:
        steps[name] = make_step(*builders[name]())
        steps[name](batches[0])  # one-off costs: allocations, DQE-CIR's first mining
    times = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            start = now()
            for idx in batches:
                steps[name](idx)
            times[name].append((now() - start) / len(batches))
    print(
        f"{args.profile} features: {n} training queries, batch {cfg.batch_size}, "
        f"{torch.get_num_threads()} thread(s), {'CPU' if args.threads == 1 else 'wall'} time, "
        f"{args.rounds} rounds of {args.steps} steps, torch {torch.__version__}"
    )
    print(f"  {'method':<16} {'best ms/step':>12} {'ratio to Combiner':>18}   per round")
    for name in names:
        ratios = [t / c for t, c in zip(times[name], times["combiner"])]
        print(
            f"  {name:<16} {1e3 * min(times[name]):12.1f} {statistics.median(ratios):18.2f}   "
            + " ".join(f"{r:.2f}" for r in ratios)
        )
    if "dqe" in names:
        seconds, per_step = dqe_refresh_share(cfg, split, features, builders["dqe"], now)
        ratio = (min(times["dqe"]) + per_step) / min(times["combiner"])
        print(
            f"  DQE-CIR miner refresh: {seconds:.2f} s, {1e3 * per_step:.1f} ms per step over "
            f"the {args.profile} run; step + refresh share: {ratio:.2f}x the Combiner's best"
        )
    if args.drift:
        loss_drift(builders, batches, args.drift, n, cfg.batch_size)


def loss_drift(builders, batches, n_steps: int, n: int, batch: int) -> None:
    """Largest loss difference over ``n_steps`` steps between the short-row softmax and
    torch.softmax in the attention (same seed, same batches)."""
    import cirlib.models.short_softmax as short

    gen = torch.Generator().manual_seed(1)
    order = [torch.randperm(n, generator=gen)[:batch] for _ in range(n_steps)]
    keep = short.SHORT_ROW
    for name in ("cala", "mapnet"):
        if name not in builders:
            continue
        losses = []
        for threshold in (keep, 0):  # 0: every row through torch.softmax (the old kernel)
            short.SHORT_ROW = threshold
            try:
                step = make_step(*builders[name]())
                losses.append([step(idx) for idx in order])
            finally:
                short.SHORT_ROW = keep
        gaps = [abs(a - b) for a, b in zip(*losses)]
        print(
            f"  {name}: short-row softmax vs torch.softmax over {n_steps} steps: max |loss "
            f"difference| {max(gaps):.2e} (step 1: {gaps[0]:.1e}; loss ~{losses[0][-1]:.3f})"
        )


# ---------------------------------------------------------------- kernels


def softmax_kernels(args) -> None:
    from cirlib.models.short_softmax import SHORT_ROW, short_softmax

    now = clock(args.threads)
    print(f"softmax forward + backward of 8192 rows, by row length (threshold {SHORT_ROW}):")
    for length in (4, 8, 9, 10, 12, 15, 16, 21, 32):
        x = torch.randn(8192, length, requires_grad=True)
        grad = torch.randn(8192, length)
        ref = best_ms(lambda x=x, g=grad: x.softmax(-1).backward(g), 20, 5, now)
        ours = best_ms(lambda x=x, g=grad: short_softmax(x).backward(g), 20, 5, now)
        print(
            f"  n={length:<3} torch.softmax {ref:6.3f} ms   short_softmax {ours:6.3f} ms   "
            f"{ref / ours:4.2f}x"
        )


def uniform_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """The mask from one uniform float per entry (cirlib's dropout before the integer lanes)."""
    return x * torch.rand(x.shape, dtype=x.dtype).ge_(p).mul_(1.0 / (1.0 - p))


def combiner_step_fn(dim: int, batch: int, torch_dropout: bool, fused: bool):
    torch.manual_seed(0)
    model = Combiner(dim).train()
    if torch_dropout:
        model.dropout = nn.Dropout(model.dropout.p)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused)
    n = 14_000
    ref, txt = torch.randn(n, dim), torch.randn(n, dim)
    tgt = F.normalize(torch.randn(n, dim), dim=-1)
    gen = torch.Generator().manual_seed(0)

    def step():
        idx = torch.randint(n, (batch,), generator=gen)
        loss = batch_classification_loss(model(ref[idx], txt[idx]), tgt[idx], 100.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def dropout_variants(args, dim: int = 128, batch: int = 256, steps: int = 30) -> None:
    now = clock(args.threads)
    print(f"Combiner step on random features, D={dim}, batch {batch}")
    variants = [
        ("nn.Dropout + Adam (per-tensor loop)", True, False),
        ("nn.Dropout + Adam (fused)", True, True),
        ("cirlib Dropout + Adam (per-tensor loop)", False, False),
        ("cirlib Dropout + Adam (fused): fit's default", False, True),
    ]
    base = None
    for name, torch_dropout, fused in variants:
        ms = best_ms(combiner_step_fn(dim, batch, torch_dropout, fused), steps, now=now)
        base = base or ms
        print(f"  {name:<46} {ms:7.2f} ms/step   {base / ms:4.2f}x")
    x = torch.randn(batch, 8 * dim, requires_grad=True)
    print(f"dropout of a {batch} x {8 * dim} activation, forward + backward:")
    ref = best_ms(lambda: F.dropout(x, 0.5, True).sum().backward(), 10 * steps, now=now)
    uniform = best_ms(lambda: uniform_dropout(x, 0.5).sum().backward(), 10 * steps, now=now)
    ours = best_ms(lambda: dropout(x, 0.5).sum().backward(), 10 * steps, now=now)
    print(f"  torch.nn.functional.dropout (bernoulli_)  {ref:6.3f} ms   1.00x")
    print(f"  mask from torch.rand >= p                 {uniform:6.3f} ms   {ref / uniform:4.2f}x")
    print(f"  cirlib dropout (16-bit integer lanes)     {ours:6.3f} ms   {ref / ours:4.2f}x")


# ---------------------------------------------------------------- matrix products

MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_addmm_activation")


def matmul_share(step, batches) -> float:
    """Fraction of the self CPU time of ``step`` over ``batches`` spent in matrix products."""
    from torch.profiler import ProfilerActivity, profile

    for idx in batches[:2]:
        step(idx)  # warm-up outside the profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for idx in batches:
            step(idx)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    products = sum(e.self_cpu_time_total for e in events if e.key in MATMUL_OPS)
    return products / total if total else 0.0


def gemm_rates(dim: int, batch: int, now) -> list[tuple[str, float]]:
    """GFLOP/s of float32 ``torch.mm`` at the Combiner's layer sizes (``dim``-wide features)."""
    shapes = [(batch, dim, 4 * dim), (batch, 8 * dim, 8 * dim), (batch, 8 * dim, dim)]
    out = []
    for m, k, n in shapes:
        a, b = torch.randn(m, k), torch.randn(k, n)
        ms = best_ms(lambda a=a, b=b: a @ b, 20, 5, now)
        out.append((f"{m}x{k} @ {k}x{n}", 2 * m * k * n / (ms / 1000) / 1e9))
    return out


def matmul_table(args) -> None:
    now = clock(args.threads)
    cfg, _, features, builders, names, batches = table_setup(args, args.steps + 2, False)
    print(
        f"share of a training step in matrix products ({', '.join(MATMUL_OPS)}; self CPU time, "
        f"{args.steps} steps, batch {cfg.batch_size}, {torch.get_num_threads()} thread(s)):"
    )
    for name in names:
        print(f"  {name:<16} {100 * matmul_share(make_step(*builders[name]()), batches):5.1f}%")
    dim = features.images.shape[1]
    print(f"float32 torch.mm at the Combiner's sizes (D={dim}):")
    for shape, rate in gemm_rates(dim, cfg.batch_size, now):
        print(f"  {shape:<22} {rate:7.1f} GFLOP/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="toy", choices=("smoke", "toy"))
    parser.add_argument("--methods", default="combiner,mgur,cala,mapnet,dqe")
    parser.add_argument("--rounds", type=int, default=5, help="turns of every method")
    parser.add_argument("--steps", type=int, default=4, help="steps per method and round")
    parser.add_argument("--batch", type=int, default=None, help="default: the profile's")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--drift", type=int, default=0, help="steps of the rounding check")
    parser.add_argument("--softmax", action="store_true", help="time the softmax kernels only")
    parser.add_argument("--dropout", action="store_true", help="time the dropout variants only")
    parser.add_argument(
        "--matmul", action="store_true", help="matrix products' share of each step, GFLOP/s"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.softmax or args.dropout or args.matmul:
        if args.softmax:
            softmax_kernels(args)
        if args.dropout:
            dropout_variants(args)
        if args.matmul:
            matmul_table(args)
        return
    methods_table(args)


if __name__ == "__main__":
    main()
