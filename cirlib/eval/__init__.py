"""Evaluation: exact chunked rankings, Recall@K (CIRR, FashionIQ, multi-target), mAP@K over
all valid targets (CIRCO), CIRR uploads, and :func:`evaluate`, every metric of a split at once.

``cirlib.eval.evaluate`` is the function (its module stays importable as
``from cirlib.eval.evaluate import evaluate``).
"""

from cirlib.eval.average_precision import (
    CIRCO_KS,
    average_precision_at_k,
    mean_average_precision_at_k,
)
from cirlib.eval.evaluate import evaluate
from cirlib.eval.ranking import (
    best_valid_ranks,
    evaluation_ranks,
    subset_ranks,
    target_ranks,
    topk,
)
from cirlib.eval.recall import (
    FASHIONIQ_PROTOCOLS,
    cirr_metrics,
    fashioniq_category_recall,
    fashioniq_summary,
    multi_target_recall,
    recall_at_k,
)
from cirlib.eval.submission import (
    CIRRSubmission,
    cirr_submission_from_scores,
    read_cirr_submission,
    write_cirr_submission,
)

__all__ = [
    "CIRCO_KS",
    "CIRRSubmission",
    "FASHIONIQ_PROTOCOLS",
    "average_precision_at_k",
    "best_valid_ranks",
    "cirr_metrics",
    "cirr_submission_from_scores",
    "evaluate",
    "evaluation_ranks",
    "fashioniq_category_recall",
    "fashioniq_summary",
    "mean_average_precision_at_k",
    "multi_target_recall",
    "read_cirr_submission",
    "recall_at_k",
    "subset_ranks",
    "target_ranks",
    "topk",
    "write_cirr_submission",
]
