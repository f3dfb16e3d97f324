"""Training recipes: one module per method, each declaring its ``Settings``, ``build``,
``loss``, ``queries``, ``gallery`` and a ``SPEC`` (:class:`~cirlib.methods.spec.MethodSpec`).

The registry is this package: :func:`registered` imports every module in it once and collects
their ``SPEC``, so a new method is one new module (plus its tests and chapter)::

    from cirlib import methods
    spec = methods.get("mgur_rp")
    model = spec.train(feats["train"], cfg, seed=0, split=splits["train"])
    queries = spec.queries(model, feats["test"])

Introduced in chapter "Comparing the methods".
"""

from __future__ import annotations

import importlib
import pkgutil

from cirlib.methods.spec import MethodSpec

__all__ = ["MethodSpec", "compared", "get", "registered"]

_found: dict[str, MethodSpec] = {}


def registered() -> dict[str, MethodSpec]:
    """Every method in the package, by name, in chapter order (then by name).

    Scans the modules of :mod:`cirlib.methods` once and keeps each module-level ``SPEC``; two
    modules registering one name is an error.
    """
    if not _found:
        specs: dict[str, MethodSpec] = {}
        for info in pkgutil.iter_modules(__path__):
            if info.name.startswith("_") or info.name == "spec":
                continue
            module = importlib.import_module(f"{__name__}.{info.name}")
            spec = getattr(module, "SPEC", None)
            if not isinstance(spec, MethodSpec):
                continue
            if spec.name in specs:
                raise RuntimeError(
                    f"method name {spec.name!r} is registered twice (cirlib.methods.{info.name} "
                    "and another module): give one of them another name"
                )
            specs[spec.name] = spec
        _found.update(sorted(specs.items(), key=lambda kv: (kv[1].chapter, kv[0])))
    return dict(_found)


def compared() -> dict[str, MethodSpec]:
    """The methods of the comparison chapter's main table (``spec.compared``)."""
    return {name: spec for name, spec in registered().items() if spec.compared}


def get(name: str) -> MethodSpec:
    """The :class:`MethodSpec` registered as ``name``; an unknown name raises ``ValueError``
    listing the known ones."""
    specs = registered()
    try:
        return specs[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; known methods: {sorted(specs)}") from None
