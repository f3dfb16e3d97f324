"""Published results the book compares against (not ours), as transcribed from summaries of the
papers' tables, not checked against the papers.

The papers' full texts were not available when these tables were entered: every number here was
transcribed from a third-party summary of the paper, so a number that looks wrong may be an
artefact of the summary or of the transcription, and is never read as the paper's. Each table
carries where it comes from, the protocol it was measured with, and per row the backbone when a
source names it. Numbers are percentages as the summary gives them.

* :data:`MAPNET_CIRR`: MAPNet (Shi et al., ICCV 2025), the table "Results comparison with
  state-of-the-art methods" on CIRR, as transcribed from a summary of the paper. Every row has
  seven numbers, read in the order every CIRR table uses (R@1, R@5, R@10, R@50, Rs@1, Rs@2,
  Rs@3); the average given for MAPNet, (R@5 + Rs@1)/2 = 83.04, agrees with that order.
* :data:`DQE_FASHIONIQ`: DQE-CIR (Park, Park, Lee, arXiv 2603.04037), FashionIQ val R@10/R@50
  per category and their means, as transcribed from a summary of the paper.

Introduced in chapter "Comparing the methods".
"""

from __future__ import annotations

import pandas as pd

# Backbones named by each paper and its released code; None = the source does not say.
BACKBONES = {
    "CLIP4CIR": "CLIP RN50x4, fine-tuned + Combiner",
    "CaLa": "BLIP-2 or CLIP RN50x4 (CaLa has both; the row does not say)",
    "SPRC": "BLIP-2, frozen ViT-g (SPRC's default) + Q-Former",
    "MAPNet": "BLIP-2, frozen image encoder (README: ViT-L)",
    "MGUR": "ResNet-50 + RoBERTa-base + CoSMo compositor",
    "CLIP4Cir": "CLIP RN50x4, fine-tuned + Combiner",
    "DQE-CIR": "BLIP-2",
}

_CIRR_COLUMNS = ("R@1", "R@5", "R@10", "R@50", "Rs@1", "Rs@2", "Rs@3")
_CIRR_ROWS = [
    ("TIRG", 14.61, 48.37, 64.08, 90.03, 22.67, 44.97, 65.14),
    ("MAAF", 10.31, 33.03, 48.30, 80.06, 21.05, 41.81, 61.60),
    ("MAAF-BERT", 10.12, 33.10, 48.01, 80.57, 22.04, 42.41, 62.14),
    ("MAAF-IT", 9.90, 32.86, 48.83, 80.27, 21.17, 42.04, 60.91),
    ("MAAF-RP", 10.22, 33.32, 48.68, 81.84, 21.41, 42.17, 61.60),
    ("CIRPLANT", 19.55, 52.55, 68.39, 92.38, 39.20, 63.03, 79.49),
    ("ARTEMIS", 16.96, 46.10, 61.31, 87.73, 39.99, 62.20, 75.67),
    ("LF-BLIP", 20.89, 48.07, 61.16, 83.71, 50.22, 73.16, 86.82),
    ("LF-CLIP (Combiner)", 33.59, 65.35, 77.35, 95.21, 62.39, 81.81, 92.02),
    ("CLIP4CIR", 38.53, 69.98, 81.86, 95.93, 68.19, 85.64, 94.17),
    ("BLIP4CIR+Bi", 40.15, 73.08, 83.88, 96.27, 72.10, 88.27, 95.93),
    ("CompoDiff", 22.35, 54.36, 73.41, 91.77, 35.84, 56.11, 76.60),
    ("CASE", 48.00, 79.11, 87.25, 97.57, 75.88, 90.58, 96.00),
    ("TG-CIR", 45.25, 78.29, 87.16, 97.30, 72.84, 89.25, 95.13),
    ("DRA", 39.93, 72.07, 83.83, 96.43, 71.04, 87.74, 94.72),
    ("CaLa", 49.11, 81.21, 89.59, 98.00, 76.27, 91.04, 96.46),
    ("CoVR-BLIP", 49.69, 78.60, 86.77, 94.31, 75.01, 88.12, 93.16),
    ("SPRC", 51.96, 82.12, 89.74, 97.69, 80.65, 92.31, 96.60),
    ("MAPNet", 54.65, 84.93, 91.44, 98.25, 81.15, 93.57, 97.49),  # the row "Ours"
]
MAPNET_CIRR = {
    "source": "MAPNet (Shi et al., ICCV 2025), table 'Results comparison with state-of-the-art "
    "methods', as transcribed from a summary of the paper, not checked against the paper",
    "dataset": "CIRR",
    "protocol": "CIRR test1 (evaluation server): Recall@K with the reference removed from the "
    "ranking, Recall_subset@K over the 5 other image-set members",
    "columns": _CIRR_COLUMNS,
    "rows": [
        {"method": name, "backbone": BACKBONES.get(name), **dict(zip(_CIRR_COLUMNS, values))}
        for name, *values in _CIRR_ROWS
    ],
    "printed_avg": {"MAPNet": 83.04},
}

_FIQ_COLUMNS = (
    "dress R@10", "dress R@50", "shirt R@10", "shirt R@50",
    "toptee R@10", "toptee R@50", "avg R@10", "avg R@50",
)  # fmt: skip
_FIQ_ROWS = [
    ("CoSMo", 23.60, 49.18, 18.11, 43.18, 24.63, 54.31, 22.11, 48.89),
    ("MGUR", 23.15, 48.74, 18.99, 43.47, 25.55, 52.83, 22.56, 48.35),
    ("CLIP4Cir", 38.32, 63.90, 44.31, 65.41, 47.27, 70.98, 43.30, 66.76),
    ("Bi-BLIP4CIR", 39.12, 62.92, 39.21, 62.81, 44.37, 67.06, 40.90, 64.26),
    ("CoVR", 44.55, 69.03, 48.43, 67.42, 52.60, 74.31, 48.53, 70.25),
    ("SPRC", 45.71, 70.00, 51.37, 72.77, 55.48, 77.46, 50.86, 73.41),
    ("QuRe", 46.80, 69.81, 53.53, 72.87, 57.47, 77.77, 52.60, 73.48),
    ("DQE-CIR", 48.47, 71.09, 55.94, 74.62, 59.38, 79.12, 54.60, 75.94),
]
DQE_FASHIONIQ = {
    "source": "DQE-CIR (Park, Park, Lee, arXiv 2603.04037), FashionIQ table, as "
    "transcribed from a summary of the paper, not checked against the paper",
    "dataset": "FashionIQ",
    "protocol": "FashionIQ val, R@10/R@50 per category, averages = plain means over the three "
    "categories; the table does not say which gallery protocol each row used (CoSMo and MGUR "
    "report with the CoSMo protocol, a smaller gallery without the reference, in their released "
    "evaluation code)",
    "columns": _FIQ_COLUMNS,
    "rows": [
        {"method": name, "backbone": BACKBONES.get(name), **dict(zip(_FIQ_COLUMNS, values))}
        for name, *values in _FIQ_ROWS
    ],
}

PUBLISHED = {"MAPNet · CIRR": MAPNET_CIRR, "DQE-CIR · FashionIQ": DQE_FASHIONIQ}


def published_table(table: dict) -> pd.DataFrame:
    """One published table as a DataFrame: rows = methods, the metric columns, then the
    backbone (empty where the source does not name it).

    Introduced in chapter "Comparing the methods".
    """
    df = pd.DataFrame(table["rows"]).set_index("method")
    df["backbone"] = df["backbone"].fillna("not stated")
    return df[[*table["columns"], "backbone"]]
