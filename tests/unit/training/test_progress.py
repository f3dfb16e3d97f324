"""cirlib.progress: TQDM_DISABLE silences every bar, including the notebook one."""

import pytest

from cirlib.progress import bars_disabled, progress


@pytest.mark.parametrize(
    ("value", "expected"), [("1", True), ("true", True), ("", False), ("0", False)]
)
def test_variable_is_read(monkeypatch, value, expected):
    monkeypatch.setenv("TQDM_DISABLE", value)
    assert bars_disabled() is expected
    assert progress(range(3)).disable is expected
    assert list(progress(range(3))) == [0, 1, 2]


def test_explicit_disable_wins(monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert progress(range(3), disable=True).disable is True
