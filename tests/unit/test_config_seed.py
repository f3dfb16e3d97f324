"""resolve() checks its seed and profile and names the chapters' SEED parameter."""

import numpy as np
import pytest

from cirlib.config import checked_seed, resolve


@pytest.mark.parametrize("bad", [True, False, "abc", "1", 1.5, 2.0, None, [0]])
def test_a_seed_that_is_not_a_whole_number_is_refused_naming_seed(bad):
    with pytest.raises(ValueError, match=r"SEED must be a whole number.*SEED: int = 0"):
        resolve("smoke", seed=bad)


@pytest.mark.parametrize("bad", [-1, 2**32])
def test_a_seed_outside_numpys_range_is_refused_naming_seed(bad):
    with pytest.raises(ValueError, match=r"SEED must be between 0 and 4294967295"):
        resolve("smoke", bad)


def test_whole_number_seeds_pass_as_plain_ints():
    assert resolve("smoke", 3).seed == 3
    cfg = resolve("smoke", np.int64(2))
    assert cfg.seed == 2 and type(cfg.seed) is int
    assert checked_seed(2**32 - 1) == 2**32 - 1


def test_a_bool_seed_never_reaches_a_checkpoint_name():
    from cirlib.registry import checkpoint_path

    with pytest.raises(ValueError, match="SEED"):
        checkpoint_path(resolve("smoke", True), "combiner", True)


@pytest.mark.parametrize("bad", [None, ["toy"], 3])
def test_a_profile_that_is_not_a_name_gets_the_profile_message(bad):
    with pytest.raises(ValueError, match="unknown profile"):
        resolve(bad)
