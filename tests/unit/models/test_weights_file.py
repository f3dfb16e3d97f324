"""A half-downloaded weights file ends in one sentence naming it; a whole file that does not fit
the model keeps open_clip's own error."""

import pytest

from cirlib.models.backbone import WeightsFileError, load_backbone, shipped_weights


@pytest.fixture
def half_weights(tmp_path):
    data = shipped_weights("toy-vit-tiny").read_bytes()
    path = tmp_path / "downloaded.pt"
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("name", ["toy-vit-tiny", "RN50"])
def test_a_truncated_weights_file_is_named_as_an_incomplete_download(half_weights, name):
    with pytest.raises(WeightsFileError) as err:
        load_backbone(name, pretrained=half_weights)
    message = str(err.value)
    assert f"weights file {half_weights}" in message
    assert "incomplete download" in message and "delete it" in message


def test_an_empty_weights_file_is_named(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(WeightsFileError, match=f"weights file {empty} \\(0 bytes\\)"):
        load_backbone("toy-vit-tiny", pretrained=empty)


def test_a_whole_file_for_another_model_is_not_called_a_broken_download():
    with pytest.raises(Exception) as err:
        load_backbone("RN50", pretrained=shipped_weights("toy-vit-tiny"))
    assert not isinstance(err.value, WeightsFileError)
