"""The curated public API: each name is the object its module defines, ``import cirlib`` stays
cheap, and an unknown name says where to look."""

import importlib
import subprocess
import sys

import pytest

import cirlib


@pytest.mark.parametrize("name", sorted(cirlib._EXPORTS))
def test_every_public_name_is_its_modules_object(name):
    assert getattr(cirlib, name) is getattr(importlib.import_module(cirlib._EXPORTS[name]), name)
    assert name in dir(cirlib)


def test_subpackages_and_the_registry_are_reachable():
    assert cirlib.methods.get("combiner").name == "combiner"
    assert cirlib.losses.batch_classification_loss is not None
    assert cirlib.evaluate is cirlib.eval.evaluate


def test_import_cirlib_does_not_import_torch():
    code = "import sys, cirlib; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_an_unknown_name_lists_the_public_ones():
    with pytest.raises(AttributeError, match="public names are"):
        cirlib.no_such_thing  # noqa: B018
