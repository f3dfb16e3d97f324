"""Two processes asking fit for the same checkpoint at once: one trains, the other loads.

This is what happens when the book build executes chapters side by side and two of them need
the short Combiner. Without the lock the second process would find no checkpoint (or the first
one's epoch 1) and train as well.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[3]

SCRIPT = r"""
import json, sys, time
from pathlib import Path
import torch
from cirlib.models.combiner import Combiner
from cirlib.train import fit

ckpt, started, role = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
torch.set_num_threads(1)
if role == "second":  # wait until the first process is inside its first training step
    deadline = time.monotonic() + 60
    while not started.exists():
        if time.monotonic() > deadline:
            sys.exit("the first process never started training")
        time.sleep(0.01)

g = torch.Generator().manual_seed(0)
img, txt = torch.randn(64, 8, generator=g), torch.randn(64, 8, generator=g)

def loss_fn(model, idx):
    if role == "first":
        started.touch()
        time.sleep(0.4)  # slow steps: the second process arrives mid-run
    return (model(img[idx], txt[idx]) - img[idx]).pow(2).mean()

torch.manual_seed(0)
res = fit(Combiner(8), loss_fn, 64, epochs=3, batch_size=32, lr=1e-3, checkpoint=ckpt)
weights = [round(float(p.sum()), 6) for p in res.model.parameters()]
print(json.dumps({"trained": res.trained_epochs, "weights": weights}))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="fcntl locks")
def test_a_second_process_waits_and_loads(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    ckpt, started = tmp_path / "ckpt" / "shared.pt", tmp_path / "started"
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "TQDM_DISABLE": "1"}

    def launch(role):
        args = [sys.executable, str(script), str(ckpt), str(started), role]
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)

    first, second = launch("first"), launch("second")
    outs = []
    for proc in (first, second):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        outs.append(json.loads(out.decode().strip().splitlines()[-1]))

    assert outs[0]["trained"] == 3  # six 0.4 s steps: the second process arrived during them
    assert outs[1]["trained"] == 0, "the second process trained the checkpoint again"
    assert outs[1]["weights"] == outs[0]["weights"]
    state = torch.load(ckpt, weights_only=False)
    assert [part["from_epoch"] for part in state["trained_with"]] == [1]  # one run wrote it
    assert (ckpt.parent / ".shared.pt.lock").exists()


def test_exclusive_serialises_two_holders(tmp_path):
    """The lock itself, across processes: the second holder enters after the first leaves."""
    code = (
        "import sys, time\n"
        "from cirlib.io import exclusive\n"
        "with exclusive(sys.argv[1]):\n"
        "    print(time.time()); time.sleep(1.0); print(time.time())\n"
    )
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    target = tmp_path / "thing.pt"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(target)], stdout=subprocess.PIPE, env=env)
        for _ in range(2)
    ]
    spans = []
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        spans.append([float(v) for v in out.decode().split()])
    (a0, a1), (b0, b1) = sorted(spans)
    assert b0 >= a1, f"the two holders overlapped: {spans}"
    assert not target.exists()  # the lock never creates the file it protects


@pytest.mark.skipif(sys.platform == "win32", reason="fcntl locks")
def test_a_file_system_without_locks_runs_unlocked(tmp_path, monkeypatch):
    import fcntl

    from cirlib.io import exclusive

    def refuse(handle, operation):
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", refuse)
    ran = []
    with exclusive(tmp_path / "ckpt.pt"):
        ran.append(True)
    assert ran == [True]
