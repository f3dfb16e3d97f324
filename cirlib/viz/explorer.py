"""The explorer: one query, any method, the top-k with the valid targets marked, and the
method's own picture of why.

Two plain functions do the work, so that the same view is a widget in Jupyter, a static figure
in the rendered book and a unit test without widgets:

* :func:`explore` ``(method, reference, text, k, context=...) -> dict`` composes the query with a
  trained head of :mod:`cirlib.registry`, ranks the gallery exactly as the method's evaluation
  does, marks the valid targets with the toy world's own grammar, and computes the method's
  picture (MAPNet's transport plan, CaLa's hinge attention, DQE-CIR's attribute weights, the
  score histogram for the Combiner and MGUR);
* :func:`render` ``(result) -> Figure`` draws it.

:func:`explorer_widget` wires them to ipywidgets controls.

Introduced in chapter "The explorer".
"""

from __future__ import annotations

import html
import io
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.colors import TwoSlopeNorm

from cirlib.data.features import SplitFeatures
from cirlib.data.records import CIRSplit
from cirlib.eval.ranking import topk
from cirlib.losses.multi_schema_interaction import schema_assignment
from cirlib.methods.mapnet import MAPNet
from cirlib.models import backbone
from cirlib.models.attributes import AttributeWeightedCombiner
from cirlib.models.cala import CaLa
from cirlib.registry import get_method
from cirlib.toyworld.edits import Edit, edit_results, is_valid_target
from cirlib.toyworld.render import render_array, render_scene
from cirlib.toyworld.scene import CELLS, Scene, scene_caption
from cirlib.viz.gallery import PLAIN, TARGET, _frame
from cirlib.viz.toy_parse import ToyParseError, parse_edit, parse_scene

NOT_VALID = "#d73027"  # a retrieved image the text does not admit
HEAD = 30  # ranks shown next to the score histogram
CELL_NAMES = ["".join(w[0].upper() for w in c.split("-")) for c in CELLS]  # TL, TC, ..., BR


@dataclass
class ExplorerContext:
    """What the explorer needs, loaded once: the gallery split and its features (tokens
    included), the toy scenes, the frozen encoder, and a trained head per method.

    Attributes
    ----------
    split : the split whose gallery is searched (the toy test split in the chapter).
    features : its :class:`~cirlib.data.features.SplitFeatures` with ``tokens=True``.
    scenes : image name → toy scene (every gallery image must have one).
    encoder : ``(model, preprocess, tokenizer)`` of :func:`cirlib.models.backbone.load_backbone`.
    models : method name (a key of :data:`cirlib.registry.METHODS`) → trained head.
    image_size : side of the rendered toy images (``cfg.image_size``).
    """

    split: CIRSplit
    features: SplitFeatures
    scenes: dict[str, Scene]
    encoder: tuple
    models: dict
    image_size: int = 48
    _galleries: dict = field(default_factory=dict, repr=False)

    def gallery_embeddings(self, method: str) -> torch.Tensor:
        """``[N, D']`` unit rows the method ranks (computed once per method)."""
        if method not in self._galleries:
            spec, model = get_method(method), self.models[method]
            rows = spec.gallery(model, self.features) if spec.gallery else self.features.images
            self._galleries[method] = F.normalize(rows.float(), dim=-1)
        return self._galleries[method]

    def device(self, method: str) -> torch.device:
        return next(self.models[method].parameters()).device


# ---------------------------------------------------------------- encoding one query
@torch.no_grad()
def encode_scene(context: ExplorerContext, scene: Scene) -> tuple[torch.Tensor, torch.Tensor]:
    """Global feature ``[1, D]`` and tokens ``[1, T, W]`` of a scene drawn as the world draws
    its gallery, through the frozen encoder (tokens stored in half precision, as the cache)."""
    model, preprocess, _ = context.encoder
    device = next(model.parameters()).device
    x = preprocess(render_scene(scene, context.image_size))[None].to(device)
    pooled, tokens = backbone.image_tokens(model, x)
    return pooled.float().cpu(), tokens.half().cpu()


@torch.no_grad()
def encode_text(context: ExplorerContext, text: str):
    """Global feature ``[1, D]``, tokens ``[1, L, W]`` (half) and mask ``[1, L]`` of a typed
    text, computed as :func:`cirlib.data.features.encode_split` computes a split's captions."""
    model, _, tokenizer = context.encoder
    device = next(model.parameters()).device
    pooled, tokens, mask = backbone.text_tokens(model, tokenizer([text]).to(device))
    return pooled.float().cpu(), tokens.half().cpu(), mask.cpu()


def _unknown_words(context: ExplorerContext, text: str) -> list[str]:
    tokenizer = context.encoder[2]
    return tokenizer.unknown_words(text) if hasattr(tokenizer, "unknown_words") else []


def _resolve_reference(context: ExplorerContext, reference) -> dict:
    """Gallery name, scene, row (None for a typed scene not in the gallery) and features."""
    if isinstance(reference, str) and reference in context.scenes:
        row = context.split.index_of(reference)
        f = context.features
        return {
            "name": reference,
            "row": row,
            "scene": context.scenes[reference],
            "image": f.images[row : row + 1].float(),
            "tokens": f.image_tokens[row : row + 1],
        }
    scene = parse_scene(reference) if isinstance(reference, str) else tuple(reference)
    image, tokens = encode_scene(context, scene)
    # a typed scene that is a gallery image is that image: it is excluded from its own ranking
    same = [n for n in context.split.gallery if context.scenes[n] == scene]
    row = context.split.index_of(same[0]) if same else None
    return {"name": same[0] if same else None, "row": row, "scene": scene, "image": image,
            "tokens": tokens}  # fmt: skip


def _split_query(context: ExplorerContext, name: str | None, text: str) -> int | None:
    """Row of the split's triplet with this reference and text, if the query is one of them."""
    if name is None:
        return None
    for i, t in enumerate(context.split.triplets):
        if t.reference == name and t.caption == text:
            return i
    return None


def one_query_features(ref: dict, text_global, text_tokens, text_mask) -> SplitFeatures:
    """A :class:`SplitFeatures` holding one query, which every method's ``queries`` accepts:
    the reference is its only image (row 0), the target is unknown (-1)."""
    return SplitFeatures(
        images=ref["image"],
        texts=text_global,
        reference_index=torch.zeros(1, dtype=torch.long),
        target_index=torch.full((1,), -1, dtype=torch.long),
        image_tokens=ref["tokens"],
        text_tokens=text_tokens,
        text_mask=text_mask,
    )


# ---------------------------------------------------------------- valid targets
def valid_gallery_rows(
    scenes: dict[str, Scene], gallery: list[str], reference: Scene, edit: Edit
) -> list[int]:
    """Gallery rows whose scene follows from ``reference`` by ``edit`` (the toy world's
    :func:`~cirlib.toyworld.edits.is_valid_target`), the reference itself excluded."""
    return [
        i
        for i, name in enumerate(gallery)
        if scenes[name] != reference and is_valid_target(reference, edit, scenes[name])
    ]


# ---------------------------------------------------------------- the methods' pictures
@torch.no_grad()
def method_picture(method: str, model, query: SplitFeatures, context: ExplorerContext,
                   top_row: int, scores: torch.Tensor, valid_rows: list[int] | None,
                   k: int) -> dict:  # fmt: skip
    """The method's own view of the query (see the module docstring)."""
    device = context.device(method)
    target_tokens = context.features.image_tokens[top_row : top_row + 1].float().to(device)
    ref_tokens = query.image_tokens.float().to(device)
    text_tokens = query.text_tokens.float().to(device)
    mask = query.text_mask.to(device)
    # The picture follows the model, not the method's name: any registered method built on one
    # of these heads (a control, a variant) shows what that head can show.
    if isinstance(model, MAPNet):
        model.eval()
        length = int(mask.sum())  # positions past the end token are padding
        query_schemas = model.schemas(ref_tokens, text_tokens[:, :length], mask[:, :length])
        target_schemas = model.schemas(target_tokens)
        tau = get_method(method).defaults.get("tau", 0.1)
        plan, assignment = schema_assignment(target_schemas, query_schemas, tau)
        return {"kind": "transport_plan", "plan": plan[0].cpu().numpy(),
                "assignment": assignment[0].cpu().numpy(), "tau": tau, "image_row": top_row}  # fmt: skip
    if isinstance(model, CaLa):
        maps = model.hinge.eval().maps(ref_tokens, text_tokens, mask, target_tokens)
        return {"kind": "hinge_attention", "attention": maps["attention"][0].cpu().numpy(),
                "image_row": top_row}  # fmt: skip
    if isinstance(model, AttributeWeightedCombiner):
        parts = model.eval()(query.images.to(device), query.texts.to(device), ref_tokens)
        labels = ["base", *getattr(model, "attributes", ())]
        return {"kind": "attribute_weights", "weights": parts.weights[0].cpu().numpy(),
                "labels": labels}  # fmt: skip
    finite = scores[torch.isfinite(scores)]
    kth = float(torch.sort(finite, descending=True).values[min(k, len(finite)) - 1])
    head_rows = torch.argsort(scores, descending=True, stable=True)[: min(HEAD, len(finite))]
    head_scores = scores[head_rows]
    valid_set = None if valid_rows is None else set(valid_rows)
    head_valid = [None if valid_set is None else int(r) in valid_set for r in head_rows]
    return {"kind": "score_histogram", "scores": finite.numpy(), "kth_score": kth,
            "valid_scores": None if valid_rows is None else scores[valid_rows].numpy(),
            "head_scores": head_scores.numpy(), "head_valid": head_valid}  # fmt: skip


# ---------------------------------------------------------------- explore
def explore(method: str, reference, text: str, k: int = 5, *, context: ExplorerContext) -> dict:
    """Compose one query with ``method``'s trained head and rank the gallery.

    Parameters
    ----------
    method : a key of :data:`cirlib.registry.METHODS` with a head in ``context.models``.
    reference : a gallery image name, a typed scene description (see
        :func:`cirlib.viz.toy_parse.parse_scene`) or a scene tuple.
    text : the modification text; a test query's own text on its own reference uses the cached
        features (the ranking behind the method's evaluation), any other text is encoded here.
    k : how many results to return.

    Returns
    -------
    dict with ``method``, ``title``, ``text``, ``k``, ``reference_name`` (None for a typed
    scene outside the gallery), ``reference_scene``, ``unknown_words`` (words the toy tokenizer
    reads as ``<unk>``), ``split_query`` (row of the matching test triplet or None), ``edit`` and
    ``edit_error`` (the parsed edit, or why the text could not be read), ``n_results`` (scenes
    the text admits on the reference, in the whole world), ``valid_rows`` (gallery rows that are
    valid targets, None when unknown), ``top_rows`` / ``top_names`` / ``top_scores`` /
    ``top_scenes`` / ``top_valid`` (the ranking's first ``k``; ``top_valid`` entries None when
    unknown), ``valid_ranks`` (rank of each valid target, from 0: the number of gallery images scored
    above it, as in chapter 1), ``scores`` (``[N]`` cosine of
    every gallery image, ``-inf`` at the excluded reference) and ``picture`` (the method's view;
    its ``kind`` is ``transport_plan``, ``hinge_attention``, ``attribute_weights`` or
    ``score_histogram``).

    Raises
    ------
    ToyParseError
        If ``reference`` is a typed scene that cannot be read.

    Introduced in chapter "The explorer".
    """
    spec, model = get_method(method), context.models[method]
    ref = _resolve_reference(context, reference)
    row_in_split = _split_query(context, ref["name"], text)
    if row_in_split is not None:
        f = context.features
        sl = slice(row_in_split, row_in_split + 1)
        query = one_query_features(ref, f.texts[sl].float(), f.text_tokens[sl], f.text_mask[sl])
    else:
        query = one_query_features(ref, *encode_text(context, text))

    q = spec.queries(model, query).float()  # [1, D'], unit rows
    gallery = context.gallery_embeddings(method)
    exclude = None if ref["row"] is None else torch.tensor([ref["row"]])
    top_scores, top_rows = topk(q, gallery, k, exclude=exclude)
    scores = (q @ gallery.T)[0]
    if ref["row"] is not None:
        scores[ref["row"]] = float("-inf")

    edit, edit_error, valid_rows, n_results = None, None, None, None
    try:
        edit = parse_edit(text)
    except ToyParseError as err:
        edit_error = str(err)
    if edit is not None:
        valid_rows = valid_gallery_rows(context.scenes, context.split.gallery, ref["scene"], edit)
        n_results = len(edit_results(ref["scene"], edit))
    elif row_in_split is not None and context.split.triplets[row_in_split].valid_targets:
        listed = context.split.triplets[row_in_split].valid_targets
        valid_rows = sorted(context.split.index_of(n) for n in listed)

    ranking = torch.argsort(scores, descending=True, stable=True)
    rank_of = torch.empty_like(ranking)
    rank_of[ranking] = torch.arange(len(ranking))  # ranks from 0, as in chapter 1
    top = top_rows[0].tolist()
    names = [context.split.gallery[i] for i in top]
    valid_set = None if valid_rows is None else set(valid_rows)
    return {
        "method": method,
        "title": spec.title,
        "text": text,
        "k": k,
        "reference_name": ref["name"],
        "reference_scene": ref["scene"],
        "unknown_words": _unknown_words(context, text),
        "split_query": row_in_split,
        "edit": edit,
        "edit_error": edit_error,
        "n_results": n_results,
        "valid_rows": valid_rows,
        "top_rows": top,
        "top_names": names,
        "top_scores": top_scores[0].tolist(),
        "top_scenes": [context.scenes[n] for n in names],
        "top_valid": [None if valid_set is None else i in valid_set for i in top],
        "valid_ranks": None if valid_rows is None else [int(rank_of[i]) for i in valid_rows],
        "scores": scores,
        "image_size": context.image_size,
        "picture": method_picture(method, model, query, context, top[0], scores, valid_rows, k),
    }


# ---------------------------------------------------------------- render
def _show_scene(ax, scene: Scene, size: int, colour: str | None, title: str) -> None:
    ax.imshow(render_array(scene, size), interpolation="nearest")
    _frame(ax, colour, 4 if colour else 1)
    ax.set_title(title, fontsize=8)


def _draw_picture(ax, picture: dict, result: dict) -> None:
    kind = picture["kind"]
    if kind == "transport_plan":
        # in units of the uniform plan 1/(N_t N_q): a trained plan may differ from it by little
        plan = picture["plan"] * picture["plan"].size
        spread = max(float(np.abs(plan - 1).max()), 1e-6)
        norm = TwoSlopeNorm(vcenter=1.0, vmin=1 - spread, vmax=1 + spread)
        im = ax.imshow(plan, cmap="RdBu_r", norm=norm, aspect="auto")
        ax.set_xlabel("query schema (reference + text)")
        ax.set_ylabel("schema of result 1")
        ax.set_title(
            f"MAPNet: transport plan / uniform plan (τ = {picture['tau']:g}); ● = argmax of each row",
            fontsize=9,
        )
        ax.scatter(picture["assignment"], np.arange(len(plan)), c="black", s=12)
        plt.colorbar(im, ax=ax, fraction=0.04)
    elif kind == "hinge_attention":
        att = picture["attention"]
        im = ax.imshow(att, cmap="magma", vmin=0, aspect="auto")
        if att.shape == (len(CELLS), len(CELLS)):
            ax.set_xticks(range(len(CELLS)), CELL_NAMES, fontsize=7)
            ax.set_yticks(range(len(CELLS)), CELL_NAMES, fontsize=7)
        ax.set_xlabel("cell of result 1")
        ax.set_ylabel("cell of the reference")
        ax.set_title("CaLa: hinge attention reference → text → result 1", fontsize=9)
        plt.colorbar(im, ax=ax, fraction=0.04)
    elif kind == "attribute_weights":
        w = picture["weights"]
        ax.bar(picture["labels"], w, color=["#9ecae1", "#fdae61", "#a1d99b", "#bcbddc"][: len(w)])
        ax.set_ylim(0, max(1.0, float(w.max()) * 1.1))
        for x, v in enumerate(w):
            ax.text(x, v, f"{v:.2f}", ha="center", va="bottom", fontsize=8)
        ax.set_title("DQE-CIR: text-conditioned weights of the sub-queries", fontsize=9)
    else:
        ax.hist(picture["scores"], bins=40, color="#bdbdbd", label="gallery")
        if picture["valid_scores"] is not None and len(picture["valid_scores"]):
            for score in picture["valid_scores"]:
                ax.axvline(score, color=TARGET, lw=1.5)
            ax.plot([], [], color=TARGET, label="valid targets")
        ax.axvline(
            picture["kth_score"], color="black", ls="--", lw=1, label=f"top-{result['k']} cut"
        )
        ax.set_xlabel("cosine(query, image)")
        ax.set_title(f"{result['title']}: scores of the gallery", fontsize=9)
        ax.legend(fontsize=7)


def _draw_head_of_ranking(ax, picture: dict, result: dict) -> None:
    """The first scores of the ranking as bars, valid targets green (the histogram's right end)."""
    head = picture["head_scores"]
    valid = picture["head_valid"]
    colours = [PLAIN if v is None else TARGET if v else NOT_VALID for v in valid]
    ax.bar(np.arange(len(head)), head, color=colours)  # rank 0 is the top
    low, high = float(head.min()), float(head.max())
    ax.set_ylim(low - 0.1 * (high - low + 1e-6), high + 0.1 * (high - low + 1e-6))
    ax.axvline(result["k"] - 0.5, color="black", ls="--", lw=1)
    ax.set_xlabel("rank")
    ax.set_title(f"first {len(head)} of the ranking (green: valid)", fontsize=9)


def result_notes(result: dict) -> list[str]:
    """One-line warnings for the reader: unknown words, unreadable text, no valid target."""
    notes = []
    if result["unknown_words"]:
        notes.append(
            "unknown to the toy tokenizer (read as <unk>): " + ", ".join(result["unknown_words"])
        )
    if result["edit_error"] and result["valid_rows"] is None:
        notes.append(f"valid targets unknown: {result['edit_error']}")
    if result["valid_rows"] is not None:
        n = len(result["valid_rows"])
        world = "" if result["n_results"] is None else f" of {result['n_results']} in the world"
        ranks = ", ".join(map(str, sorted(result["valid_ranks"])[:8]))
        notes.append(
            f"{n} valid target(s) in the gallery{world}" + (f"; ranks {ranks}" if n else "")
        )
    return notes


def render(result: dict, size: float = 1.5):
    """The view of :func:`explore`'s result as a matplotlib Figure: reference and text, the
    top-k (green frame: valid target, red: not valid, grey: unknown), the method's picture.

    Introduced in chapter "The explorer".
    """
    k = result["k"]
    fig = plt.figure(figsize=(max(size * (k + 1), 7.5), size * 1.5 + 3.0))
    grid = fig.add_gridspec(2, k + 1, height_ratios=[size * 1.3, 3.0], hspace=0.35)
    ref_title = result["reference_name"] or "typed scene"
    _show_scene(fig.add_subplot(grid[0, 0]), result["reference_scene"], result["image_size"],
                "black", f"reference\n{ref_title}")  # fmt: skip
    for j in range(k):
        valid = result["top_valid"][j]
        colour = None if valid is None else TARGET if valid else NOT_VALID
        _show_scene(fig.add_subplot(grid[0, j + 1]), result["top_scenes"][j], result["image_size"],
                    colour, f"{j}. {result['top_scores'][j]:.3f}")  # fmt: skip
    if result["picture"]["kind"] == "score_histogram":
        split = (k + 1) // 2 + 1
        _draw_picture(fig.add_subplot(grid[1, :split]), result["picture"], result)
        _draw_head_of_ranking(fig.add_subplot(grid[1, split:]), result["picture"], result)
    else:
        _draw_picture(fig.add_subplot(grid[1, :]), result["picture"], result)
    notes = result_notes(result)
    head = f"{result['title']}: “{result['text']}”"
    fig.suptitle("\n".join([head, *notes]), fontsize=9, y=1.0 + 0.03 * len(notes))
    return fig


# ---------------------------------------------------------------- widget
def _png(scene: Scene, size: int) -> bytes:
    buffer = io.BytesIO()
    render_scene(scene, size).resize((96, 96), 0).save(buffer, format="PNG")
    return buffer.getvalue()


def explorer_widget(context: ExplorerContext, methods: list[str] | None = None, k: int = 5):
    """An ipywidgets box: reference (dropdown + picture, or a typed scene), text, method, k.

    Every change calls :func:`explore` and :func:`render` and shows the figure; problems (a
    typed scene that cannot be read, unknown words) appear as messages in the box, never as
    errors. Needs a live kernel: in the rendered book use the static figures instead.

    Introduced in chapter "The explorer".
    """
    import ipywidgets as w
    from IPython.display import display

    methods = list(methods or context.models)
    references = list(dict.fromkeys(t.reference for t in context.split.triplets))
    first_text = {}
    for t in context.split.triplets:
        first_text.setdefault(t.reference, t.caption)

    pick = w.Dropdown(options=references, description="reference")
    picture = w.Image(format="png", width=96, height=96)
    typed = w.Text(placeholder="or type a scene: large red circle at top-left, ...",
                   description="scene", continuous_update=False,
                   layout=w.Layout(width="60%"))  # fmt: skip
    text = w.Text(value=first_text.get(references[0], ""), description="text",
                  continuous_update=False, layout=w.Layout(width="60%"))  # fmt: skip
    method = w.Dropdown(options=[(get_method(m).title, m) for m in methods], description="method")
    top = w.IntSlider(value=k, min=1, max=10, description="top-k")
    message = w.HTML()
    out = w.Output()

    def update(_=None) -> None:
        notes = []
        reference = pick.value
        if typed.value.strip():
            try:
                reference = parse_scene(typed.value)
                notes.append("typed scene: " + scene_caption(reference))
            except ToyParseError as err:
                notes.append(f"cannot read the scene ({err}); using the selected image")
        scene = reference if not isinstance(reference, str) else context.scenes[reference]
        picture.value = _png(scene, context.image_size)
        result = explore(method.value, reference, text.value, top.value, context=context)
        message.value = "<br>".join(html.escape(n) for n in notes + result_notes(result))
        with out:
            out.clear_output(wait=True)
            fig = render(result)
            display(fig)
            plt.close(fig)

    def new_reference(change) -> None:
        new_text = first_text.get(change["new"], text.value)
        if new_text != text.value:
            text.value = new_text  # the text's observer redraws
        else:
            update()

    pick.observe(new_reference, names="value")
    for control in (typed, text, method, top):
        control.observe(update, names="value")
    update()
    return w.VBox([w.HBox([w.VBox([pick, typed, text, method, top]), picture]), message, out])
