"""The real-annotation excerpt shown in chapter 1: small, attributed, text only, and verbatim
from the published files (checked when those files are on the machine)."""

from __future__ import annotations

import json

import pytest
from _repo_modules import import_script

from cirlib.data.real_excerpts import EXCERPT_DIR, excerpt_texts, load_real_excerpts
from cirlib.notebook import realdata_dir

script = import_script("make_real_excerpts")
REAL = realdata_dir()


def test_the_excerpt_is_small_text_only_and_attributed():
    excerpts = load_real_excerpts()
    assert excerpts is not None, f"the excerpt is missing from {EXCERPT_DIR}"
    assert 20 <= len(excerpts["CIRR val"]) <= 30 and 20 <= len(excerpts["FashionIQ val"]) <= 30
    assert {e["category"] for e in excerpts["FashionIQ val"]} == {"dress", "shirt", "toptee"}
    for entry in excerpts["CIRR val"]:
        assert set(entry) == {"pairid", "reference", "target_hard", "caption"}
    texts = excerpt_texts(excerpts)
    assert len(texts["FashionIQ val"]) == 2 * len(excerpts["FashionIQ val"])
    assert all(isinstance(t, str) and t for ts in texts.values() for t in ts)
    readme = (EXCERPT_DIR / "README.md").read_text(encoding="utf-8")
    for needed in ("MIT", "CDLA", "Cuberick-Orion/CIRR", "XiaoxiaoGuo/fashion-iq", "LICENSE-CIRR"):
        assert needed in readme
    assert "Permission is hereby granted" in (EXCERPT_DIR / "LICENSE-CIRR").read_text("utf-8")
    assert sum(p.stat().st_size for p in EXCERPT_DIR.iterdir()) < 50_000


def test_missing_excerpt_is_none(tmp_path):
    assert load_real_excerpts(tmp_path) is None


@pytest.mark.skipif(REAL is None, reason="the real annotation files are not on this machine")
def test_the_script_redraws_the_committed_excerpt_verbatim(tmp_path):
    assert script.main(["--source", str(REAL), "--out", str(tmp_path)]) == 0
    for name in ("cirr_val.json", "fashioniq_val.json"):
        assert json.loads((tmp_path / name).read_text()) == json.loads(
            (EXCERPT_DIR / name).read_text()
        )
    full = json.loads((REAL / "cirr" / "captions" / "cap.rc2.val.json").read_text())
    by_pair = {e["pairid"]: e for e in full}
    for entry in load_real_excerpts()["CIRR val"]:
        assert by_pair[entry["pairid"]]["caption"] == entry["caption"]


def test_the_script_says_what_is_missing(tmp_path, capsys):
    assert script.main(["--source", str(tmp_path), "--out", str(tmp_path / "out")]) == 1
    assert "cap.rc2.val.json" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
