"""The grader accepts the library's losses and independent correct versions, and rejects subtly
wrong ones with a report that names the failing case."""

import math

import pytest
import torch
import torch.nn.functional as F

from cirlib import losses
from cirlib.course import EXERCISES, grade


@pytest.mark.parametrize("exercise", sorted(EXERCISES))
def test_library_reference_passes_every_case(exercise):
    report = grade(EXERCISES[exercise].reference, exercise, seed=3)
    assert report.passed, str(report)
    assert len(report.results) >= 4  # random inputs and edge cases
    assert all(r.value_error == 0.0 for r in report.results)


def looped_batch_classification(queries, targets, scale):
    """-log softmax written as a Python loop over the batch."""
    total = 0.0
    for i in range(len(queries)):
        logits = [
            scale * float(queries[i].detach() @ targets[j].detach()) for j in range(len(targets))
        ]
        top = max(logits)
        log_sum = top + math.log(sum(math.exp(v - top) for v in logits))
        total += log_sum - logits[i]
    return torch.tensor(total / len(queries))


def test_an_independent_loop_passes_on_values():
    # a loop in Python floats has no gradient: the report must say so, but every value agrees
    report = grade(looped_batch_classification, "batch_classification_loss")
    assert all(r.value_error < 1e-4 for r in report.results), str(report)
    assert not report.passed and all("no gradient" in r.message for r in report.failed)


def test_independent_torch_versions_pass():
    def pairwise(positive, negatives, temperature):
        return -F.logsigmoid((positive[:, None] - negatives) / temperature).mean()

    def relaxed(queries, targets, weights, gamma):
        c = (1 + F.cosine_similarity(queries[:, None], targets[None], dim=-1)) / 2
        return (weights * c**2 + torch.relu(gamma - weights) * (1 - c) ** 2).mean()

    def hinge(module, reference, text, text_mask, target):
        q = module.reference_query(module.image_adapter(reference))
        h = module.hinge(text)
        k = module.target_key(module.image_adapter(target))
        m = text_mask.float()
        return torch.einsum("bnd,bld,bl,ble,bme->bnm", q, h, m, h, k) / module.dim

    assert grade(pairwise, "pairwise_preference_loss").passed
    assert grade(relaxed, "relaxed_proximity_loss").passed
    assert grade(hinge, "hinge_logits").passed


def test_missing_mean_fails_except_for_a_batch_of_one():
    def summed(queries, targets, scale):
        logits = scale * queries @ targets.T
        return F.cross_entropy(logits, torch.arange(len(queries)), reduction="sum")

    report = grade(summed, "batch_classification_loss")
    assert not report.passed
    verdict = {r.name: r.passed for r in report.results}
    assert verdict["batch of 1"] and sum(verdict.values()) == 1
    assert "FAIL random B=8, D=16, s=100" in str(report)


def test_wrong_temperature_fails_only_where_it_matters():
    def fixed_scale(queries, targets, scale):  # ignores the argument: CLIP4Cir's 100 always
        return losses.batch_classification_loss(queries, targets, 100.0)

    report = grade(fixed_scale, "batch_classification_loss")
    failed = {r.name for r in report.failed}
    # the cases run at s = 100 agree; the s = 10 and s = 20 ones must not
    assert failed == {
        "random B=5, D=32, s=10",
        "ties: duplicated targets",
        "ties: identical queries",
    }
    assert "queries [5, 32], targets [5, 32], scale=10.0" in str(report)


def test_wrong_sign_fails_with_its_gradient():
    def flipped(positive, negatives, temperature):
        return F.softplus((positive[:, None] - negatives) / temperature).mean()

    report = grade(flipped, "pairwise_preference_loss")
    # a tie gives log 2 either way: that case alone agrees in value, not in gradient
    tie = next(r for r in report.results if r.name.startswith("ties"))
    assert tie.value_error < 1e-6 and not tie.passed
    assert "gradient differs with respect to positive, negatives" in tie.message
    assert len(report.failed) == len(report.results)


def test_naive_log_sigmoid_overflows_on_the_extreme_case():
    def naive(positive, negatives, temperature):
        return -torch.log(torch.sigmoid((positive[:, None] - negatives) / temperature)).mean()

    report = grade(naive, "pairwise_preference_loss")
    assert {r.name for r in report.failed} == {"gaps of ±2 at tau=0.01 (overflow)"}


def test_ignoring_the_text_mask_fails_the_padded_cases():
    def unmasked(module, reference, text, text_mask, target):
        return module.maps(reference, text, torch.ones_like(text_mask), target)["logits"]

    report = grade(unmasked, "hinge_logits")
    verdict = {r.name: r.passed for r in report.results}
    assert verdict["no padding B=3"]
    assert not verdict["padded text, lengths 2..7"]
    assert not verdict["batch of 1, one real token"]


def test_missing_stop_gradient_is_caught_by_the_gradient():
    from cirlib.losses.multi_schema_interaction import schema_assignment

    def no_stop_gradient(query_schemas, target_schemas, tau):
        _, assignment = schema_assignment(target_schemas, query_schemas, tau)
        q = F.normalize(query_schemas, dim=-1)
        t = F.normalize(target_schemas, dim=-1)  # should be detached
        matched = torch.gather(q, 1, assignment[..., None].expand(-1, -1, q.shape[-1]))
        return (1 - (matched * t).sum(-1)).mean()

    report = grade(no_stop_gradient, "multi_schema_interaction_loss")
    assert not report.passed
    for r in report.results:
        assert r.value_error < 1e-5  # the value is right ...
        assert "target_schemas" in r.message  # ... the gradient reaches the targets


def test_zero_times_log_zero_fails_the_one_hot_case():
    def plain_log(positive, negatives, target_probs, temperature):
        logits = torch.cat([positive[:, None], negatives], 1) / temperature
        p = target_probs
        return (p * (torch.log(p) - F.log_softmax(logits, 1))).sum(1).mean()

    report = grade(plain_log, "target_distribution_kl_loss")
    assert {r.name for r in report.failed} == {"one-hot labels (0 log 0)"}


def test_gate_free_margin_fails_only_with_gates():
    def ungated(query_attributes, target_attributes, negative_attributes, margin, gates):
        return losses.attribute_margin_loss(
            query_attributes, target_attributes, negative_attributes, margin, None
        )

    report = grade(ungated, "attribute_margin_loss")
    failed = {r.name for r in report.failed}
    assert "random B=4, K=3, no gates" not in failed
    assert "all gates closed (loss 0)" in failed and "random B=4, K=3, 0/1 gates" in failed


def test_crashing_or_misshapen_student_is_reported_not_raised():
    def crashes(*args, **kwargs):
        raise RuntimeError("shape mismatch in my code")

    report = grade(crashes, "convex_cala_loss")
    assert not report.passed
    assert all("RuntimeError: shape mismatch in my code" in r.message for r in report.results)

    def per_row(qtm, tbia=None, ctr=None, *, alpha, beta):
        return F.cross_entropy(qtm, torch.arange(len(qtm)), reduction="none")

    report = grade(per_row, "additive_cala_loss")
    assert any("output shape" in r.message for r in report.failed)


def test_unknown_exercise():
    with pytest.raises(KeyError, match="unknown exercise"):
        grade(losses.batch_classification_loss, "no_such_loss")


def test_clip_contrastive_needs_both_directions():
    def both(image_features, text_features, logit_scale):
        x, y = F.normalize(image_features, dim=-1), F.normalize(text_features, dim=-1)
        logits = logit_scale * x @ y.T
        labels = torch.arange(len(x))
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2

    def image_to_text_only(image_features, text_features, logit_scale):
        x, y = F.normalize(image_features, dim=-1), F.normalize(text_features, dim=-1)
        return F.cross_entropy(logit_scale * x @ y.T, torch.arange(len(x)))

    assert grade(both, "clip_contrastive_loss").passed
    report = grade(image_to_text_only, "clip_contrastive_loss")
    # one direction equals the mean of both only where the batch is symmetric: B = 1, or s = 0
    assert {r.name for r in report.results if r.passed} == {"batch of 1", "s = 0 (loss log B)"}
