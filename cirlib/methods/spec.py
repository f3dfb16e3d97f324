"""The recipe contract: what a method module declares so that one trainer trains it.

A method module defines

* ``Settings``, one frozen dataclass holding everything that defines a run of the method;
* ``build(features, settings) -> nn.Module``, the model sized from the split's features;
* ``loss(features, settings, run) -> loss_fn(model, idx)``, the training objective on index
  batches (``run`` is a :class:`cirlib.train.TrainingRun`: the run's length, seed, split,
  device and the run-only options the spec accepts);
* ``queries(model, features) -> [Q, D']`` and ``gallery(model, features) -> [N, D']`` (or None
  when the gallery is the frozen image features);
* ``SPEC = MethodSpec(...)``, which :mod:`cirlib.methods` finds by scanning the package.

:func:`cirlib.train.train_method` then seeds, builds, names the checkpoint's settings and runs
:func:`cirlib.train.fit` (resume, AMP, several processes) the same way for every method, and
:meth:`MethodSpec.train` adds the options the method's chapter uses under a profile. Special
cases are fields here, not name tests elsewhere: a method that needs the training split
(``needs_split``), that tags its main run (``tagged_main_run``), that trains on another budget
off the toy world (``budget``), that sizes itself by profile (``chapter_options``), that trains
on something other than the triplets (``samples``: the zero-shot methods train on images), that
writes its queries from the modification texts themselves (``needs_captions``), that trains
with another optimiser (``optimizer``).

Introduced in chapter "Comparing the methods".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass


def _no_options(cfg) -> dict:
    return {}


def _same_budget(cfg):
    return cfg


def _triplets(features, settings) -> int:
    return len(features.texts)


@dataclass(frozen=True)
class MethodSpec:
    """One trainable method: its settings, model, loss and embeddings, and how it is run.

    Attributes
    ----------
    name : registry key, also the first word of its checkpoint names.
    title : the name printed in tables.
    chapter : the chapter that introduces it (``notebooks/<stem>``).
    settings : the method's ``Settings`` (a frozen dataclass; its defaults are the method's).
    build : ``build(features, settings) -> nn.Module``.
    loss : ``loss(features, settings, run) -> loss_fn(model, idx) -> scalar``.
    queries : ``queries(model, features) -> [Q, D']``, L2-normalised rows, eval mode.
    gallery : ``gallery(model, features) -> [N, D']`` L2-normalised, or None when the gallery
        is the frozen image features.
    needs_tokens : reads token features (``cached_features(..., tokens=True)``).
    needs_split : its loss reads the training split (``train(..., split=...)`` is required).
    tagged_main_run : its chapter names the main run with a tag (``<name>-main-...``).
    compared : one of the methods of the comparison chapter's main table (a control or a new
        combination is registered with ``compared=False``).
    run_options : keyword options the loss accepts that are not settings (a recorder, a miner
        to inspect afterwards); they never enter the checkpoint's fingerprint.
    chapter_options : ``chapter_options(cfg) -> dict``, the settings the chapter's main run
        changes under profile ``cfg`` (e.g. smaller branches on the toy world).
    budget : ``budget(cfg) -> cfg``, the profile the method trains on (epochs, batch, lr).
    fingerprint : ``fingerprint(settings) -> dict``, what the checkpoint records; by default
        ``{"method": name, **settings}``.
    complete : ``complete(features, settings) -> settings``, fills data-dependent defaults.
    frozen_for_ddp : ``frozen_for_ddp(model, settings) -> [modules]`` that get no gradient in
        this configuration; with ``distributed=True`` they are frozen, as DDP requires a
        gradient for every parameter it tracks.
    samples : ``samples(features, settings) -> n``, how many training examples the loss's
        batch indices address; by default the triplets (``len(features.texts)``). A zero-shot
        method trains on images alone and returns a number of images.
    needs_captions : its queries are written from the modification texts themselves, not from
        their cached features: ``queries(model, features, split)`` with the evaluated
        :class:`~cirlib.data.records.CIRSplit` (call :meth:`embed_queries`).
    optimizer : ``optimizer(settings, cfg) -> (model -> torch.optim.Optimizer)``, replacing
        :func:`~cirlib.train.fit`'s Adam; name the optimiser in the checkpoint's record.
    """

    name: str
    title: str
    chapter: str
    settings: type
    build: Callable
    loss: Callable
    queries: Callable
    gallery: Callable | None = None
    needs_tokens: bool = False
    needs_split: bool = False
    tagged_main_run: bool = False
    compared: bool = True
    run_options: tuple[str, ...] = ()
    chapter_options: Callable = _no_options
    budget: Callable = _same_budget
    fingerprint: Callable | None = None
    complete: Callable | None = None
    frozen_for_ddp: Callable | None = None
    samples: Callable = _triplets
    needs_captions: bool = False
    optimizer: Callable | None = None

    def __post_init__(self):
        if not (
            dataclasses.is_dataclass(self.settings) and self.settings.__dataclass_params__.frozen
        ):
            raise TypeError(f"{self.name}: settings must be a frozen dataclass type")

    def embed_queries(self, model, features, split=None):
        """The method's query embeddings ``[Q, D']`` of a split: :attr:`queries` with ``split``
        when the method reads the modification texts (:attr:`needs_captions`), else without."""
        if not self.needs_captions:
            return self.queries(model, features)
        if split is None:
            raise ValueError(
                f"{self.title} writes its queries from the modification texts: pass the evaluated "
                "split, embed_queries(model, features, split)"
            )
        return self.queries(model, features, split)

    def settings_for(self, cfg=None):
        """The settings of the chapter's main run under profile ``cfg`` (the toy world when
        None): the defaults of :attr:`settings` with :attr:`chapter_options` applied."""
        if cfg is None:
            from cirlib.config import resolve

            cfg = resolve("toy", device="cpu")
        return dataclasses.replace(self.settings(), **self.chapter_options(cfg))

    @property
    def defaults(self) -> dict:
        """The chapter's main toy run's settings as a dict."""
        return dataclasses.asdict(self.settings_for())

    def record(self, settings) -> dict:
        """What a checkpoint of a run with ``settings`` records (and compares on load)."""
        if self.fingerprint is not None:
            return self.fingerprint(settings)
        return {"method": self.name, **dataclasses.asdict(settings)}

    def fit(self, train_features, cfg, *, seed: int, **options):
        """:func:`cirlib.train.train_method` of this method: its ``Settings`` defaults, the
        profile's budget as given; returns the :class:`~cirlib.train.FitResult`."""
        from cirlib.train import train_method

        return train_method(self, train_features, cfg, seed=seed, **options)

    def train(self, train_features, cfg, *, seed: int, split=None, checkpoint=None, **options):
        """Checkpoint-or-train the chapter's main run under ``cfg``: :meth:`settings_for`
        ``cfg``, trained on :attr:`budget` of ``cfg``, ``options`` overriding settings (and
        ``eval_fn``, ``distributed``, ... passed to :func:`~cirlib.train.train_method`).
        Returns the model."""
        return self.fit(
            train_features,
            self.budget(cfg),
            seed=seed,
            split=split,
            checkpoint=checkpoint,
            settings=self.settings_for(cfg),
            **options,
        ).model
