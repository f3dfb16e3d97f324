"""The compact per-query rank format: exact round trips, labels with gaps, clear errors."""

import numpy as np
import pytest

from cirlib.eval.query_ranks import (
    RankedEvaluation,
    decode_array,
    decode_groups,
    decode_ranks,
    encode_array,
    encode_groups,
    encode_ranks,
)


def test_ranks_round_trip_exactly_and_compactly():
    rng = np.random.default_rng(0)
    ranks = {"R": rng.geometric(0.2, 2400) - 1, "Rs": rng.integers(0, 6, 2400), "mR": [0, 3**19]}
    text = encode_ranks(ranks)
    back = decode_ranks(text)
    for k, v in ranks.items():
        np.testing.assert_array_equal(back[k], np.asarray(v))
        assert back[k].dtype == np.int64
    assert len(text["R"]) < len(",".join(map(str, ranks["R"]))) / 2  # smaller than a JSON list
    assert decode_array(encode_array(np.array([], dtype=np.int64))).size == 0


def test_bad_values_and_bad_text_are_refused():
    with pytest.raises(ValueError, match="non-negative integers"):
        encode_array(np.array([0, -1]))
    with pytest.raises(ValueError, match="non-negative integers"):
        encode_array(np.array([0.5]))
    with pytest.raises(ValueError, match="exceeds int32"):
        encode_array(np.array([2**31]))
    with pytest.raises(ValueError, match="unknown rank kinds"):
        encode_ranks({"X": [1]})
    with pytest.raises(ValueError, match="not an encoded rank array"):
        decode_array("not base64!")
    with pytest.raises(ValueError, match="says 3 queries"):
        decode_array(encode_array(np.arange(4)), 3)


def test_groups_round_trip_with_missing_labels():
    groups = {"edit_type": ["shape", "colour", None, "colour"], "granularity": ["fine"] * 4}
    enc = encode_groups(groups)
    assert enc["edit_type"]["labels"] == ["colour", "shape"]
    assert decode_groups(enc, 4) == groups


def test_ranked_evaluation_is_the_plain_dict_plus_ranks():
    metrics = {"all": {"R@1": 50.0, "n": 2}}
    r = RankedEvaluation(metrics, {"R": [0, 3]}, {"edit_type": ["a", "b"]})
    assert r == metrics and isinstance(r, dict)
    assert r.ranks["R"].tolist() == [0, 3] and r.groups == {"edit_type": ["a", "b"]}
