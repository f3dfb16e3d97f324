"""The book's text: sources are named honestly.

"seed" means a random seed only. A paper is cited as the paper ({cite}); what was read in a
third-party summary of a paper is labelled as such, and nothing in the book calls a summary the
"seed" or blames the paper for a number only a summary gives.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1].parent
CHAPTERS = sorted((REPO / "notebooks").glob("*.ipynb"))
BOOK_PAGES = sorted((REPO / "book").glob("*.md"))
LIBRARY = sorted((REPO / "cirlib").rglob("*.py"))

# Phrases that use "seed" for a summary of a paper, or claim a paper misprints something.
SUMMARY_AS_SEED = re.compile(
    r"seed (document|summary|summaries|writes|says|gives|lists)|seed's (header|table|text|formula|words)|(fixed by|\bin) the seed\b(?![- ])"
    r"|\(the \"seed\"\)|\|\s*seed\s*\||(?-i:\bSEED =)|misprint|names only three",
    re.IGNORECASE,
)


def _text(path: Path) -> str:
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        return "\n".join("".join(c["source"]) for c in cells)
    return path.read_text(encoding="utf-8")


def _hits(path: Path) -> list[str]:
    rel = path.relative_to(REPO).as_posix()
    out = []
    for line in _text(path).splitlines():
        for m in SUMMARY_AS_SEED.finditer(line):
            out.append(f"{rel}: {m.group(0)!r} in {line.strip()[:120]!r}")
    return out


@pytest.mark.parametrize("path", CHAPTERS + BOOK_PAGES + LIBRARY, ids=lambda p: p.name)
def test_seed_means_only_a_random_seed(path):
    hits = _hits(path)
    assert not hits, "cite the paper, or say 'a summary of the paper':\n" + "\n".join(hits)


def test_the_pattern_catches_what_it_is_for():
    for bad in (
        "(seed document 000)",
        "the seed writes",
        "as the seed writes it",
        'the authors\' summary (the "seed")',
        "| RPLoss formula | seed | as written |",
        "SEED = the seed summary",
        "the paper misprints its average",
        "What is fixed by the seed: the MSI loss",
        "(no formula in the seed)",
        "The seed's header lists",
    ):
        assert SUMMARY_AS_SEED.search(bad), bad
    for good in (
        "the seed-to-seed spread",
        "within the seed spread",
        "SEED: int = 0",
        "seed 0",
        "depends on the seed only",
        "seed = checked_seed(seed)",
        "every seed's value",
    ):
        assert not SUMMARY_AS_SEED.search(good), good


def test_published_tables_say_they_were_transcribed_from_summaries():
    from cirlib.published import PUBLISHED

    for name, table in PUBLISHED.items():
        assert "transcribed from a summary of the paper" in table["source"], name
        assert "not checked against the paper" in table["source"], name


# ---------------------------------------------------------------- one notation
NOTATION = REPO / "book" / "notation.md"
NOTATION_CHAPTERS = [p for p in CHAPTERS if p.name[:2] in {f"{i:02d}" for i in range(1, 11)}]
# spellings the chapters used before the notation page; each now means one thing only
RETIRED = {
    r"s_\ell": "the logit scale is $s$",
    r"\gamma_e": r"MGUR's blend weight is $\omega_e$ ($\gamma$ is RPLoss's)",
    # \lambda_{MSI}, \lambda_{RP}, \lambda_{pair}, \lambda_{KL}, ...: any subscripted lambda
    "\\lambda_{": r"loss weights are $w_{MSI}$, $w_{RP}$, ... ($\lambda$ is the Combiner's text weight)",
    r"e^{-s}": r"MGUR's uncertainty is $u$ ($s$ is the logit scale)",
    r"\hat f": r"an augmented feature is $\tilde f$ (a hat means normalised)",
    "s(q": r"a score is $\mathrm{sim}(q, c)$ ($s$ is the logit scale)",
    "s^+": r"scores are $\mathrm{sim}^\pm$",
    "s^-": r"scores are $\mathrm{sim}^\pm$",
    "counted from 1": "ranks count from 0",
    "rank 1 is the top": "ranks count from 0 (rank 0 is the top)",
    # one name per feature: x for images, y for texts, a subscript naming the input
    "x_T": r"the text feature is $y$ ($y_T$ when the input matters)",
    "x_I": r"the image feature is $x$ ($x_{I_r}$, $x_{I_t}$ when the input matters)",
    # T is the modification text; the text encoder is E_T
    r"T(\text": r"the text encoder is $E_T$: $E_T(\text{template};\ * \mapsto v)$",
    # phi is Pic2Word's mapping network only
    r"\phi(R)": r"CaLa's Linear + ReLU adapter is $\psi$ ($\phi$ is Pic2Word's mapping network)",
    r"\phi(G)": r"CaLa's Linear + ReLU adapter is $\psi$ ($\phi$ is Pic2Word's mapping network)",
    r"\varphi_a": r"DQE-CIR's attribute projection is $\xi_a$ ($\phi$ is Pic2Word's mapping network)",
    # w is a fixed loss weight; DQE-CIR's text-conditioned weights are pi, and colour and shape
    # are spelled col and shp (s is the logit scale, c a candidate image)
    r"w = \mathrm{softmax}": r"DQE-CIR's text-conditioned weights are $\pi$ ($w$ weighs a loss term)",
    "w_0": r"DQE-CIR's weights are $\pi_0$, $\pi_{col}$, $\pi_{shp}$ ($w$ weighs a loss term)",
    "w_c": r"DQE-CIR's weights are $\pi_0$, $\pi_{col}$, $\pi_{shp}$ ($w$ weighs a loss term)",
    "w_s": r"DQE-CIR's weights are $\pi_0$, $\pi_{col}$, $\pi_{shp}$ ($w$ weighs a loss term)",
    "w_a": r"DQE-CIR's weights are $\pi_a$ ($w$ weighs a loss term)",
    "q^c": r"DQE-CIR's colour and shape parts are $q^{col}$, $q^{shp}$ ($c$ is a candidate)",
    "q^s": r"DQE-CIR's colour and shape parts are $q^{col}$, $q^{shp}$ ($s$ is the logit scale)",
    r"q^{c\top}": r"DQE-CIR's colour and shape parts are $q^{col}$, $q^{shp}$",
    r"q^{s\top}": r"DQE-CIR's colour and shape parts are $q^{col}$, $q^{shp}$",
    "t^c": r"DQE-CIR's colour and shape parts are $t^{col}$, $t^{shp}$ ($c$ is a candidate)",
    "t^s": r"DQE-CIR's colour and shape parts are $t^{col}$, $t^{shp}$ ($s$ is the logit scale)",
    # a fixed loss weight is a w (alpha and beta are MGUR's noise)
    r"\alpha\, \mathrm{CE}": r"CaLa's branch weights are $w_{TBIA}$, $w_{CTR}$ (a loss weight is a $w$)",
    r"\alpha\,\mathrm{CE}": r"CaLa's branch weights are $w_{TBIA}$, $w_{CTR}$ (a loss weight is a $w$)",
    r"\beta\, \mathrm{CE}": r"CaLa's branch weights are $w_{TBIA}$, $w_{CTR}$ (a loss weight is a $w$)",
    r"\beta\,\mathrm{CE}": r"CaLa's branch weights are $w_{TBIA}$, $w_{CTR}$ (a loss weight is a $w$)",
    r"\alpha = \beta = 0.5": r"CaLa's branch weights are $w_{TBIA} = w_{CTR} = 0.5$",
    # u is MGUR's uncertainty only
    r"\cos(u_i": r"CaLa's CTR text side is $\zeta_i$ ($u$ is MGUR's uncertainty)",
    "W_u": r"CaLa's CTR text side is $\zeta_i = W_\zeta\,\mathrm{ReLU}(W_T y)$",
    r"\lceil u": r"the mid-zone's bounds are $\eta_{lo}$, $\eta_{hi}$ ($u$ is MGUR's uncertainty)",
    r"\lfloor \ell": r"the mid-zone's bounds are $\eta_{lo}$, $\eta_{hi}$",
    r"\ell$-": r"the mid-zone's bounds are $\eta_{lo}$, $\eta_{hi}$",
    r"\ell`-": r"the mid-zone's bounds are $\eta_{lo}$, $\eta_{hi}$",
}


def _markdown(path: Path) -> str:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


def _notation_symbols() -> list[str]:
    rows = [line for line in NOTATION.read_text(encoding="utf-8").splitlines() if line[:2] == "| "]
    return [row.split("|")[1].strip() for row in rows if row.split("|")[1].strip() != "symbol"]


def test_the_notation_page_lists_each_symbol_once_and_is_in_the_book():
    symbols = _notation_symbols()
    assert len(symbols) >= 15
    assert len(symbols) == len(set(symbols)), "a symbol is listed twice"
    toc = (REPO / "_toc.yml").read_text(encoding="utf-8")
    assert "file: book/notation" in toc.split("caption: Reference")[1]


def _retired_in(text: str) -> list[str]:
    """The retired spellings in ``text``, each with its fix (not inside a longer name).

    A spelling that ends in a letter or digit must end there too: ``w_c`` is DQE-CIR's old
    colour weight, but ``w_colour_on_colour`` is a glue name."""
    found = []
    for old, why in RETIRED.items():
        end = r"(?![A-Za-z0-9])" if old[-1].isalnum() else ""
        if re.search(r"(?<![A-Za-z_\\])" + re.escape(old) + end, text):
            found.append(f"{old!r}: {why}")
    return found


@pytest.mark.parametrize("path", NOTATION_CHAPTERS, ids=lambda p: p.stem)
def test_chapters_use_the_notation(path):
    found = _retired_in(_markdown(path))
    assert not found, f"{path.name} uses retired notation:\n" + "\n".join(found)


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.relative_to(REPO).as_posix())
def test_library_docstrings_use_the_notation(path):
    # readers open the docstrings from the chapters, so their math follows the notation page too;
    # the whole source is read (docstrings, comments, messages): the spellings are LaTeX or prose
    rel = path.relative_to(REPO).as_posix()
    found = [
        f"{rel}:{number}: {hit}"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        for hit in _retired_in(line)
    ]
    assert not found, "retired notation in the library (use book/notation.md):\n" + "\n".join(found)


def test_the_retired_spellings_are_found_where_they_are_used_and_only_there():
    for bad in (
        r":math:`\lambda_{pair}\,\mathcal{L}_{pair}`",
        r"\mathcal{L}_u = \tfrac12\big(e^{-s}\,\mathcal{L} + s\big)",
        r"\max\big(0,\; m - s(q_i, t_i) + s(q_i, n_{ik})\big)",
        r"\hat f = \alpha \odot \mathrm{IN}(f) + \beta",
        r"\gamma_e = e^{-g e / E}",
        r"Q = \phi(R) W_q,\quad K = \phi(G) W_k",
        r"\tilde R = [c; \phi(R)]",
        r"a learned $\varphi_a: \mathbb{R}^W \to \mathbb{R}^d$",
        r"$w = \mathrm{softmax}(\mathrm{MLP}(x_T))$",
        r"w_0\, q^{0\top} t^0_c + w_c\, q^{c\top} t^c_c + w_s\, q^{s\top} t^s_c",
        r"$[w_0 q^0; w_c q^c; w_s q^s]$ and $[t^0; t^c; t^s]$",
        r"\sum_a w_a\, q^{a\top} t^a_c",
        r"$S_{CTR}(i, j) = 10 \cos(u_i, v_j)$",
        r":math:`u = W_u\,\mathrm{ReLU}(W_T x_T)`",
        r"\lfloor \ell M \rfloor \le r < \max(\lfloor \ell M\rfloor + 1, \lceil u M \rceil)",
        r"the band between the $\ell$- and $u$-quantiles",
        r"between the :math:`\ell`- and :math:`u`-quantiles",
        r"\mathrm{CE}(S_{QTM}) + \alpha\, \mathrm{CE}(S_{TBIA}) + \beta\, \mathrm{CE}(S_{CTR})",
        r":math:`\mathrm{CE}(S_{QTM}) + \alpha\,\mathrm{CE}(S_{TBIA})`",
        r"we use $\alpha = \beta = 0.5$",
        r"p_T = \mathrm{drop}(\mathrm{ReLU}(W_T x_T))",
        r"\lambda\, x_T + (1-\lambda)\, x_I",
        r"y_i = T(\text{template};\ * \mapsto \phi(x_i))",
    ):
        assert _retired_in(bad), bad
    # each of those spellings is caught on its own, not only beside another one
    for bad in ("w_0", "w_c", "w_s", "q^c", "q^s", "t^c_c", "t^s;", r"\phi(G)", r"\lceil u n"):
        assert _retired_in(bad), bad
    for good in (
        r"\lambda = \sigma\big(w_\lambda^\top \mathrm{drop}(\mathrm{ReLU}(W_\lambda c))\big)",
        r"\mathcal{L}_u = \tfrac12\big(e^{-u}\,\mathcal{L} + u\big)",
        r"\mathrm{sim}(q_i, t_i) - \mathrm{sim}(q_i, n_{ik})",
        "ranks = target_ranks(q, gallery, targets(q))",
        r"\tilde f = \alpha \odot \mathrm{IN}(f) + \beta, \qquad \hat F_k",
        r"\max(\gamma - W_{ij}, 0)",
        r"y_i = E_T(\text{template};\ * \mapsto \phi(x_i))",
        r"\mathrm{normalize}(x_{I_r} + y_T)",
        r"Q = \psi(R) W_q,\quad H = \mathrm{diag}(m)\, T W_h",
        r"\pi_0\, q^{0\top} t^0_c + \pi_{col}\, q^{col\top} t^{col}_c + \pi_{shp}\, q^{shp\top} t^{shp}_c",
        r"$w_t = 0.45$, $w_h = 0.1$, $w_{MSI}$, $w_g^\top h_k$",
        "{glue:text}`w_colour_on_colour:.2f` and {glue:text}`w_shape_elsewhere:.2f`",
        r"$S_{CTR}(i, j) = 10 \cos(\zeta_i, v_j)$",
        r"\log u_i = \log a_i - \operatorname{LSE}_k(-M_{ik}/\tau + \log v_k)",
        r"\lfloor \eta_{lo} M \rfloor \le r < \lceil \eta_{hi} M \rceil",
        r"\ell_2-normalised",
        r"\mathrm{CE}(S_{QTM}) + w_{TBIA}\, \mathrm{CE}(S_{TBIA}) + w_{CTR}\, \mathrm{CE}(S_{CTR})",
        r"\tilde f = \alpha \odot \mathrm{IN}(f) + \beta",
        r"the paper writes them :math:`\alpha`, :math:`\beta`",
    ):
        assert not _retired_in(good), good


def test_every_listed_symbol_is_used_in_a_chapter():
    text = "\n".join(_markdown(p) for p in NOTATION_CHAPTERS)
    for symbol in _notation_symbols():
        first = re.findall(r"\$([^$]+)\$", symbol)
        needle = (first[0] if first else symbol.split("@")[0]).split("(")[0]
        # each symbol as the chapters write it: the row's first formula (a function without its
        # arguments), or the metric's name
        assert needle.split(",")[0].strip() in text, f"{symbol} is not used in chapters 1-7"
