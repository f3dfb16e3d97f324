"""Grade a student's loss function against the library's: same inputs, same value, same gradient.

A student's function is graded against the reference (here a correct one, with the same
signature, and one that forgets the mean, which fails):

>>> from cirlib.course import grade
>>> def my_margin_ranking_loss(positive, negatives, margin=0.1):
...     return (margin - positive[:, None] + negatives).clamp_min(0).mean()
>>> grade(my_margin_ranking_loss, "margin_ranking_loss").passed
True
>>> def summed(positive, negatives, margin=0.1):
...     return (margin - positive[:, None] + negatives).clamp_min(0).sum()
>>> grade(summed, "margin_ranking_loss").passed
False

``print(report)`` shows one line per case: pass/fail, the largest errors, the input shapes.

Each exercise runs the student's function and the reference on the same seeded inputs: random
batches of several shapes and the edge cases where hand-written losses usually break (a batch of
one, tied scores, padded text tokens, extreme temperatures, zero weights). A case passes when
the values agree to ``atol + rtol·|reference|`` and so do the gradients with respect to the
inputs the loss is meant to train (a missing stop-gradient or a detached output fails there).

Introduced in the page "Teaching with this book".
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from cirlib import losses
from cirlib.losses.cala_losses import additive_cala_loss, convex_cala_loss
from cirlib.losses.relaxed_proximity import negative_confidence
from cirlib.models.cala import HingeCrossAttention


@dataclass
class Case:
    """One set of inputs: positional ``args``, keyword ``kwargs``, and the positions of the
    tensor arguments whose gradient is compared."""

    name: str
    args: tuple
    kwargs: dict = field(default_factory=dict)
    differentiable: tuple[int, ...] = ()


@dataclass
class LossExercise:
    """A loss to implement: the reference, its call signature (for the student) and its cases."""

    reference: Callable
    signature: str
    chapter: str
    cases: Callable[[torch.Generator], list[Case]]


@dataclass
class CaseResult:
    """The outcome of one case."""

    name: str
    passed: bool
    value_error: float | None
    gradient_error: float | None
    shapes: str
    message: str = ""


@dataclass
class GradeReport:
    """Every case of one exercise; ``str(report)`` is the table shown to the student."""

    exercise: str
    chapter: str
    results: list[CaseResult]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> list[CaseResult]:
        return [r for r in self.results if not r.passed]

    def __str__(self) -> str:
        n_ok = sum(r.passed for r in self.results)
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [
            f"{self.exercise} (chapter {self.chapter!r}): {verdict}, "
            f"{n_ok}/{len(self.results)} cases agree with the library",
        ]
        width = max(len(r.name) for r in self.results)
        for r in self.results:
            value = "-" if r.value_error is None else f"{r.value_error:.2e}"
            grad = "-" if r.gradient_error is None else f"{r.gradient_error:.2e}"
            status = "ok  " if r.passed else "FAIL"
            line = f"  {status} {r.name:<{width}}  max|Δ| value {value:>8}, gradient {grad:>8}"
            lines.append(f"{line}  inputs: {r.shapes}")
            if r.message:
                lines.append(f"       {r.message}")
        return "\n".join(lines)

    def _repr_pretty_(self, printer, cycle) -> None:  # IPython shows the table, not a dataclass
        printer.text(str(self))


# ---------------------------------------------------------------- input makers
def _randn(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=g)


def _unit(g: torch.Generator, *shape: int) -> torch.Tensor:
    return F.normalize(_randn(g, *shape), dim=-1)


def _argument_names(fn: Callable, count: int) -> list[str]:
    """The names of ``fn``'s first ``count`` positional parameters (``arg<i>`` if unknown)."""
    try:
        names = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        names = []
    return [names[i] if i < len(names) else f"arg{i}" for i in range(count)]


def _describe(names: list[str], args: tuple, kwargs: dict) -> str:
    """``name [shape]`` for tensors, ``name=value`` for numbers, e.g. for a failing case's line."""

    def one(x) -> str:
        if isinstance(x, torch.Tensor):
            return str(list(x.shape))
        if isinstance(x, torch.nn.Module):
            return type(x).__name__
        return repr(x)

    parts = [
        f"{n} {one(a)}" if isinstance(a, torch.Tensor) else f"{n}={one(a)}"
        for n, a in zip(names, args)
    ]
    return ", ".join(parts + [f"{k}={one(v)}" for k, v in kwargs.items()])


# ---------------------------------------------------------------- cases per loss
def _batch_classification_cases(g: torch.Generator) -> list[Case]:
    ties = _unit(g, 6, 16)
    same_queries = _unit(g, 1, 16).expand(5, 16).clone()
    return [
        Case("random B=8, D=16, s=100", (_unit(g, 8, 16), _unit(g, 8, 16), 100.0), {}, (0, 1)),
        Case("random B=5, D=32, s=10", (_unit(g, 5, 32), _unit(g, 5, 32), 10.0), {}, (0, 1)),
        Case("batch of 1", (_unit(g, 1, 16), _unit(g, 1, 16), 100.0), {}, (0, 1)),
        Case(
            "ties: duplicated targets",
            (_unit(g, 6, 16), ties[[0, 0, 1, 1, 2, 2]], 20.0),
            {},
            (0, 1),
        ),
        Case("ties: identical queries", (same_queries, _unit(g, 5, 16), 20.0), {}, (0, 1)),
    ]


def _clip_contrastive_cases(g: torch.Generator) -> list[Case]:
    same = _randn(g, 1, 16).expand(4, 16).clone()
    return [
        Case("random B=8, D=16, s=14.3", (_randn(g, 8, 16), _randn(g, 8, 16), 14.3), {}, (0, 1)),
        Case("random B=5, D=32, s=100", (_randn(g, 5, 32), _randn(g, 5, 32), 100.0), {}, (0, 1)),
        Case("batch of 1", (_randn(g, 1, 16), _randn(g, 1, 16), 14.3), {}, (0, 1)),
        Case(
            "unnormalised (norm ~ 30)", (8 * _randn(g, 6, 16), _randn(g, 6, 16), 10.0), {}, (0, 1)
        ),
        Case("ties: identical texts", (_randn(g, 4, 16), same, 20.0), {}, (0, 1)),
        Case("s = 0 (loss log B)", (_randn(g, 6, 16), _randn(g, 6, 16), 0.0), {}, (0, 1)),
    ]


def _aleatoric_cases(g: torch.Generator) -> list[Case]:
    return [
        Case("scalar loss, scalar s", (torch.tensor(2.5), torch.tensor(0.3)), {}, (0, 1)),
        Case("s = 0 (plain half loss)", (torch.tensor(1.7), torch.tensor(0.0)), {}, (0, 1)),
        Case("negative s", (torch.tensor(0.4), torch.tensor(-1.2)), {}, (0, 1)),
        Case(
            "per-sample losses [6], scalar s", (_randn(g, 6).abs(), torch.tensor(0.8)), {}, (0, 1)
        ),
        Case("s as a Python float", (torch.tensor(3.0), 0.5), {}, (0,)),
    ]


def _uncertainty_cases(g: torch.Generator) -> list[Case]:
    return [
        Case("random B=8, D=16", (_unit(g, 8, 16), 4 * _randn(g, 8, 16), 10.0), {}, (0, 1)),
        Case("random B=4, D=32, s=100", (_unit(g, 4, 32), _randn(g, 4, 32), 100.0), {}, (0, 1)),
        Case("batch of 1", (_unit(g, 1, 16), 2 * _randn(g, 1, 16), 10.0), {}, (0, 1)),
        Case(
            "ties: duplicated targets",
            (_unit(g, 4, 16), _randn(g, 2, 16)[[0, 0, 1, 1]], 10.0),
            {},
            (0, 1),
        ),
    ]


def _relaxed_proximity_cases(g: torch.Generator) -> list[Case]:
    def case(name: str, q: torch.Tensor, t: torch.Tensor, gamma: float) -> Case:
        return Case(name, (q, t, negative_confidence(t, 0.6), gamma), {}, (0, 1))

    dup = _randn(g, 3, 16)[[0, 0, 1, 2, 2]]
    return [
        case("random B=8, D=16, gamma=0.5", _randn(g, 8, 16), _randn(g, 8, 16), 0.5),
        case("random B=5, D=8, gamma=1", _randn(g, 5, 8), _randn(g, 5, 8), 1.0),
        case("batch of 1", _randn(g, 1, 16), _randn(g, 1, 16), 0.5),
        case("ties: duplicated targets (W = 0)", _randn(g, 5, 16), dup, 0.5),
        case("unnormalised inputs (norm ~ 30)", 10 * _randn(g, 6, 8), 10 * _randn(g, 6, 8), 0.5),
    ]


def _multi_schema_cases(g: torch.Generator) -> list[Case]:
    tied = _randn(g, 2, 3, 8)[:, [0, 0, 1, 1, 2, 2]]  # duplicated query schemas tie in the plan
    return [
        Case(
            "random B=4, N_q=6, N_t=5, D=8",
            (_randn(g, 4, 6, 8), _randn(g, 4, 5, 8), 0.1),
            {},
            (0, 1),
        ),
        Case(
            "random B=2, N_q=N_t=4, tau=0.5",
            (_randn(g, 2, 4, 16), _randn(g, 2, 4, 16), 0.5),
            {},
            (0, 1),
        ),
        Case("batch of 1", (_randn(g, 1, 6, 8), _randn(g, 1, 6, 8), 0.1), {}, (0, 1)),
        Case("ties: duplicated query schemas", (tied, _randn(g, 2, 4, 8), 0.1), {}, (0, 1)),
    ]


def _scores(g: torch.Generator, batch: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.rand(batch, generator=g) * 2 - 1, torch.rand(batch, k, generator=g) * 2 - 1


def _pairwise_cases(g: torch.Generator) -> list[Case]:
    pos, neg = _scores(g, 8, 5)
    far = torch.tensor([1.0, -1.0]), torch.tensor([[-1.0, 1.0], [1.0, -1.0]])
    return [
        Case("random B=8, K=5, tau=0.05", (pos, neg, 0.05), {}, (0, 1)),
        Case("random B=4, K=3, tau=0.2", (*_scores(g, 4, 3), 0.2), {}, (0, 1)),
        Case("batch of 1, one negative", (*_scores(g, 1, 1), 0.05), {}, (0, 1)),
        Case("ties: negative = target", (pos, pos[:, None].expand(8, 3).clone(), 0.05), {}, (0, 1)),
        Case("gaps of ±2 at tau=0.01 (overflow)", (*far, 0.01), {}, (0, 1)),
    ]


def _kl_cases(g: torch.Generator) -> list[Case]:
    pos, neg = _scores(g, 6, 4)
    soft = losses.target_relative_distribution(torch.rand(6, 4, generator=g), 0.1)
    one_hot = torch.zeros(6, 5)
    one_hot[:, 0] = 1.0
    pos1, neg1 = _scores(g, 1, 3)
    return [
        Case("random soft labels B=6, K=4", (pos, neg, soft, 0.05), {}, (0, 1)),
        Case("one-hot labels (0 log 0)", (pos, neg, one_hot, 0.05), {}, (0, 1)),
        Case(
            "batch of 1, tau=0.2",
            (pos1, neg1, torch.tensor([[0.4, 0.3, 0.2, 0.1]]), 0.2),
            {},
            (0, 1),
        ),
        Case(
            "ties: negatives = target",
            (pos, pos[:, None].expand(6, 4).clone(), soft, 0.05),
            {},
            (0, 1),
        ),
    ]


def _margin_cases(g: torch.Generator) -> list[Case]:
    pos, neg = _scores(g, 8, 5)
    return [
        Case("random B=8, K=5, m=0.1", (pos, neg, 0.1), {}, (0, 1)),
        Case("random B=4, K=2, m=0.5", (*_scores(g, 4, 2), 0.5), {}, (0, 1)),
        Case("batch of 1, one negative", (*_scores(g, 1, 1), 0.1), {}, (0, 1)),
        Case("ties: negative = target", (pos, pos[:, None].expand(8, 2).clone(), 0.1), {}, (0, 1)),
        Case("all separated (loss 0)", (torch.ones(3), -torch.ones(3, 4), 0.1), {}, (0, 1)),
    ]


def _attribute_cases(g: torch.Generator) -> list[Case]:
    def inputs(batch: int, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return _unit(g, batch, 2, 8), _unit(g, batch, 2, 8), _unit(g, batch, k, 2, 8)

    gates = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    return [
        Case("random B=4, K=3, no gates", (*inputs(4, 3), 0.1, None), {}, (0, 1, 2)),
        Case("random B=4, K=3, 0/1 gates", (*inputs(4, 3), 0.2, gates), {}, (0, 1, 2)),
        Case(
            "batch of 1, one negative",
            (*inputs(1, 1), 0.1, torch.tensor([[1.0, 0.0]])),
            {},
            (0, 1, 2),
        ),
        Case("all gates closed (loss 0)", (*inputs(2, 3), 0.1, torch.zeros(2, 2)), {}, (0, 1, 2)),
    ]


def _logits(g: torch.Generator, batch: int) -> torch.Tensor:
    return 5 * _randn(g, batch, batch)


def _additive_cala_cases(g: torch.Generator) -> list[Case]:
    flat = torch.zeros(4, 4)
    return [
        Case(
            "random B=6, alpha=0.5, beta=0.3",
            (_logits(g, 6), _logits(g, 6), _logits(g, 6)),
            {"alpha": 0.5, "beta": 0.3},
            (0, 1, 2),
        ),
        Case(
            "batch of 1",
            (_logits(g, 1), _logits(g, 1), _logits(g, 1)),
            {"alpha": 1.0, "beta": 1.0},
            (0, 1, 2),
        ),
        Case(
            "branches off (None, weight 0)",
            (_logits(g, 5), None, None),
            {"alpha": 0.0, "beta": 0.0},
            (0,),
        ),
        Case(
            "ties: constant logits",
            (flat, flat.clone(), _logits(g, 4)),
            {"alpha": 0.2, "beta": 0.7},
            (0, 1, 2),
        ),
    ]


def _convex_cala_cases(g: torch.Generator) -> list[Case]:
    flat = torch.zeros(4, 4)
    return [
        Case(
            "random B=6, w_t=0.45, w_h=0.1",
            (_logits(g, 6), _logits(g, 6), _logits(g, 6)),
            {"tac_weight": 0.45, "hca_weight": 0.1},
            (0, 1, 2),
        ),
        Case(
            "batch of 1",
            (_logits(g, 1), _logits(g, 1), _logits(g, 1)),
            {"tac_weight": 0.5, "hca_weight": 0.5},
            (0, 1, 2),
        ),
        Case(
            "branches off (None, weight 0)",
            (_logits(g, 5), None, None),
            {"tac_weight": 0.0, "hca_weight": 0.0},
            (0,),
        ),
        Case(
            "ties: constant logits",
            (flat, _logits(g, 4), flat.clone()),
            {"tac_weight": 0.3, "hca_weight": 0.6},
            (0, 1, 2),
        ),
    ]


def _hinge_reference(hinge: HingeCrossAttention, reference, text, text_mask, target):
    return hinge.maps(reference, text, text_mask, target)["logits"]


def _hinge_cases(g: torch.Generator) -> list[Case]:
    def module(width: int, text_width: int, dim: int) -> HingeCrossAttention:
        with torch.random.fork_rng():
            torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=g)))
            return HingeCrossAttention(width, text_width, dim).eval()

    def padded(lengths: list[int], length: int) -> torch.Tensor:
        return torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]

    def case(name: str, batch: int, lengths: list[int], n: int = 9, m: int = 9) -> Case:
        # padded positions hold large garbage: a solution that ignores the mask cannot pass
        text = _randn(g, batch, 7, 12) * 10
        mask = padded(lengths, 7)
        args = (module(16, 12, 8), _randn(g, batch, n, 16), text, mask, _randn(g, batch, m, 16))
        return Case(name, args, {}, (1, 2, 4))

    return [
        case("no padding B=3", 3, [7, 7, 7]),
        case("padded text, lengths 2..7", 4, [7, 2, 5, 3]),
        case("batch of 1, one real token", 1, [1]),
        case("N != M (4 reference, 6 target tokens)", 2, [3, 6], n=4, m=6),
    ]


EXERCISES: dict[str, LossExercise] = {
    "clip_contrastive_loss": LossExercise(
        losses.clip_contrastive_loss,
        "(image_features [B, D], text_features [B, D], logit_scale) -> scalar",
        "A tiny CLIP for a tiny world",
        _clip_contrastive_cases,
    ),
    "batch_classification_loss": LossExercise(
        losses.batch_classification_loss,
        "(queries [B, D], targets [B, D], scale) -> scalar",
        "The Combiner baseline",
        _batch_classification_cases,
    ),
    "aleatoric_loss": LossExercise(
        losses.aleatoric_loss,
        "(matching_loss, uncertainty) -> same shape as matching_loss",
        "MGUR: multi-grained uncertainty regularisation",
        _aleatoric_cases,
    ),
    "uncertainty_regularisation_loss": LossExercise(
        losses.uncertainty_regularisation_loss,
        "(queries [B, D], augmented_targets [B, D], scale) -> scalar",
        "MGUR: multi-grained uncertainty regularisation",
        _uncertainty_cases,
    ),
    "relaxed_proximity_loss": LossExercise(
        losses.relaxed_proximity_loss,
        "(queries [N, D], targets [N, D], weights [N, N], gamma) -> scalar",
        "MAPNet: multi-schema interaction and relaxed proximity",
        _relaxed_proximity_cases,
    ),
    "multi_schema_interaction_loss": LossExercise(
        losses.multi_schema_interaction_loss,
        "(query_schemas [B, N_q, D], target_schemas [B, N_t, D], tau) -> scalar",
        "MAPNet: multi-schema interaction and relaxed proximity",
        _multi_schema_cases,
    ),
    "additive_cala_loss": LossExercise(
        additive_cala_loss,
        "(qtm [B, B], tbia [B, B] | None, ctr [B, B] | None, *, alpha, beta) -> scalar",
        "CaLa: complementary association learning",
        _additive_cala_cases,
    ),
    "convex_cala_loss": LossExercise(
        convex_cala_loss,
        "(qtm [B, B], tbia [B, B] | None, ctr [B, B] | None, *, tac_weight, hca_weight) -> scalar",
        "CaLa: complementary association learning",
        _convex_cala_cases,
    ),
    "hinge_logits": LossExercise(
        _hinge_reference,
        "(hinge: HingeCrossAttention, reference [B, N, W_I], text [B, L, W_T], "
        "text_mask [B, L], target [B, M, W_I]) -> logits [B, N, M]",
        "CaLa: complementary association learning",
        _hinge_cases,
    ),
    "pairwise_preference_loss": LossExercise(
        losses.pairwise_preference_loss,
        "(positive [B], negatives [B, K], temperature) -> scalar",
        "DQE-CIR: attribute-weighted queries and target-relative negatives",
        _pairwise_cases,
    ),
    "target_distribution_kl_loss": LossExercise(
        losses.target_distribution_kl_loss,
        "(positive [B], negatives [B, K], target_probs [B, K + 1], temperature) -> scalar",
        "DQE-CIR: attribute-weighted queries and target-relative negatives",
        _kl_cases,
    ),
    "margin_ranking_loss": LossExercise(
        losses.margin_ranking_loss,
        "(positive [B], negatives [B, K], margin) -> scalar",
        "DQE-CIR: attribute-weighted queries and target-relative negatives",
        _margin_cases,
    ),
    "attribute_margin_loss": LossExercise(
        losses.attribute_margin_loss,
        "(query_attributes [B, A, E], target_attributes [B, A, E], "
        "negative_attributes [B, K, A, E], margin, gates [B, A] | None) -> scalar",
        "DQE-CIR: attribute-weighted queries and target-relative negatives",
        _attribute_cases,
    ),
}


def _run(fn: Callable, case: Case, requires_grad: bool):
    """``fn``'s output on fresh copies of the case's inputs, and those copies (leaves that
    require grad at the differentiable positions when ``requires_grad``)."""
    args = []
    for i, a in enumerate(case.args):
        if isinstance(a, torch.Tensor):
            a = a.detach().clone()
            if requires_grad and i in case.differentiable:
                a.requires_grad_(True)
        args.append(a)
    kwargs = {
        k: v.detach().clone() if isinstance(v, torch.Tensor) else v for k, v in case.kwargs.items()
    }
    return fn(*args, **kwargs), [args[i] for i in case.differentiable]


def _gradients(output: torch.Tensor, inputs: list[torch.Tensor]) -> list[torch.Tensor] | None:
    """d(sum of output)/d(input) for each input (zeros where unused); None without a graph."""
    if not output.requires_grad:
        return None
    grads = torch.autograd.grad(output.sum(), inputs, allow_unused=True)
    return [torch.zeros_like(x) if d is None else d for x, d in zip(inputs, grads)]


def _max_error(mine: torch.Tensor, reference: torch.Tensor, atol: float, rtol: float):
    """(max |difference|, within tolerance?) for two tensors of the same shape."""
    mine, reference = mine.detach().double(), reference.detach().double()
    diff = (mine - reference).abs()
    if not torch.isfinite(mine).all():
        return float("inf"), False
    return float(diff.max()) if diff.numel() else 0.0, bool(
        (diff <= atol + rtol * reference.abs()).all()
    )


def _grade_case(student: Callable, reference: Callable, case: Case, atol: float, rtol: float):
    names = _argument_names(reference, len(case.args))
    shapes = _describe(names, case.args, case.kwargs)
    expected, ref_inputs = _run(reference, case, requires_grad=True)
    try:
        got, my_inputs = _run(student, case, requires_grad=True)
        got = torch.as_tensor(got)
    except Exception as err:  # a student's bug is a failed case, not a crash of the grader
        return CaseResult(
            case.name, False, None, None, shapes, f"raised {type(err).__name__}: {err}"
        )
    if got.shape != expected.shape:
        message = f"output shape {list(got.shape)}, expected {list(expected.shape)}"
        return CaseResult(case.name, False, None, None, shapes, message)
    value_error, value_ok = _max_error(got, expected, atol, rtol)
    messages = (
        []
        if value_ok
        else [
            f"value {got.detach().flatten()[:4].tolist()} "
            f"!= expected {expected.detach().flatten()[:4].tolist()}"
        ]
    )
    gradient_error, gradient_ok = None, True
    if case.differentiable:
        expected_grads = _gradients(expected, ref_inputs)
        try:
            my_grads = _gradients(got, my_inputs)
        except Exception as err:
            my_grads, messages = None, [*messages, f"backward raised {type(err).__name__}: {err}"]
        if expected_grads is not None and my_grads is None:
            gradient_ok = False
            messages.append("the output has no gradient (detached, or computed outside torch?)")
        elif expected_grads is not None:
            errors = [_max_error(m, e, atol, rtol) for m, e in zip(my_grads, expected_grads)]
            gradient_error = max(e for e, _ in errors)
            bad = [names[case.differentiable[i]] for i, (_, ok) in enumerate(errors) if not ok]
            gradient_ok = not bad
            if bad:
                messages.append(f"gradient differs with respect to {', '.join(bad)}")
    return CaseResult(
        case.name,
        value_ok and gradient_ok,
        value_error,
        gradient_error,
        shapes,
        "; ".join(messages),
    )


def grade(
    student: Callable,
    exercise: str,
    *,
    seed: int = 0,
    atol: float = 1e-5,
    rtol: float = 1e-4,
) -> GradeReport:
    """Run ``student`` and the library's reference on every case of ``exercise``.

    Parameters
    ----------
    student : the function to grade, called exactly like the reference
        (``EXERCISES[exercise].signature``).
    exercise : a key of :data:`EXERCISES` (the name of the library function).
    seed : seed of the random inputs (the edge cases are fixed by construction).
    atol, rtol : a value or gradient entry passes when ``|mine - ref| <= atol + rtol |ref|``
        (float32 inputs: summation order alone moves the last digits).

    Returns
    -------
    GradeReport, whose ``str`` lists pass/fail, the largest absolute error of the value and of
    the gradients, and the input shapes of every case.

    Introduced in the page "Teaching with this book".
    """
    if exercise not in EXERCISES:
        raise KeyError(f"unknown exercise {exercise!r}; choose from {sorted(EXERCISES)}")
    spec = EXERCISES[exercise]
    g = torch.Generator().manual_seed(seed)
    results = [_grade_case(student, spec.reference, case, atol, rtol) for case in spec.cases(g)]
    return GradeReport(exercise, spec.chapter, results)
