"""Shared by the multi-process tests: run a worker on several gloo ranks, collect what each saved."""

import pytest
import torch
import torch.multiprocessing as mp


@pytest.fixture(scope="session")
def run_on_ranks(tmp_path_factory):
    """``run(worker, name, world) -> (folder, [rank 0's saved object, ...])``.

    ``worker(rank, init_file, out_dir)`` must save ``<out_dir>/rank<rank>.pt``. Forked, not
    spawned: a spawned child re-imports torch and pytest (about 10 s on a busy machine).
    """

    def run(worker, name: str, world: int):
        out = tmp_path_factory.mktemp(name)
        mp.start_processes(
            worker, args=(str(out / "rendezvous"), str(out)), nprocs=world, start_method="fork"
        )
        return out, [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(world)]

    return run
