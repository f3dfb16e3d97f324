"""Chapter 2 run twice at once pretrains the toy encoder once; the second run loads the first's
checkpoint."""

import threading
import time

import torch

import cirlib.models.pretrain as pretrain
from cirlib.models.backbone import load_backbone


def test_two_runs_at_once_pretrain_once(tmp_path, monkeypatch):
    calls = []

    def slow_pretrain(model, tokenizer, **kwargs):
        calls.append(kwargs)
        time.sleep(0.5)  # the other run arrives meanwhile
        with torch.no_grad():
            next(model.parameters()).add_(1.0)
        return [{"step": 1, "loss": 0.5}]

    monkeypatch.setattr(pretrain, "pretrain_toy_clip", slow_pretrain)
    ckpt = tmp_path / "clip.pt"
    models = [load_backbone("toy-vit-tiny", pretrained=None) for _ in range(2)]
    histories = [None, None]

    def run(i):
        model, _, tokenizer = models[i]
        histories[i] = pretrain.pretrain_or_load(model, tokenizer, ckpt, steps=3)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert histories[0] == histories[1] == [{"step": 1, "loss": 0.5}]
    a, b = (next(m[0].parameters()) for m in models)
    assert torch.equal(a, b)  # the second run holds the first's weights
