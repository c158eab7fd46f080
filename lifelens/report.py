"""Export one case: a PNG figure and a self-contained HTML report.

Both are built from a :class:`CaseReport` (plain numbers and uint8 RGB images), so the
dashboard, a notebook or a script make identical reports. The HTML inlines every image
as base64 PNG and loads nothing from the network; the PNG is drawn with Pillow.
"""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lifelens import imaging
from lifelens.tasks import DISCLAIMER


@dataclass
class ExplanationPanel:
    """One explanation as exported: ``overlay`` uint8 RGB (H, W, 3); AUCs in [0, 1] or None."""

    method: str
    overlay: np.ndarray
    target: str = ""
    layer: str = ""
    deletion_auc: float | None = None
    insertion_auc: float | None = None
    note: str = ""


@dataclass
class CaseReport:
    """Everything an exported case shows.

    ``image``: uint8 RGB (H, W, 3) as the network sees it (with any lesion circle);
    ``softmax``, ``bayes_mean``, ``bayes_low``, ``bayes_high``: (K,) probabilities in [0, 1];
    ``entropy`` and ``mutual_information`` in nats; ``model`` and ``data``: provenance as
    label -> text.
    """

    task_title: str
    case_name: str
    source: str
    image: np.ndarray
    class_names: list[str]
    softmax: np.ndarray
    bayes_mean: np.ndarray
    bayes_low: np.ndarray
    bayes_high: np.ndarray
    entropy: float
    mutual_information: float
    bayes_method: str = "MC dropout"
    true_label: str | None = None
    warnings: list[str] = field(default_factory=list)
    explanations: list[ExplanationPanel] = field(default_factory=list)
    model: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    disclaimer: str = DISCLAIMER
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))

    called: str | None = None  # the class the card's decision rule calls (threshold, grade cut points)

    @property
    def predicted(self) -> str:
        return self.called or self.class_names[int(np.argmax(self.bayes_mean))]


def _plain(text: str) -> str:
    """Markdown emphasis off, for the PNG and HTML text."""
    return str(text).replace("**", "")


# ----------------------------------------------------------------------------- PNG

_FONT_FILES = ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
               "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf")


def _font(size: int, bold: bool = False):
    for path in _FONT_FILES:
        candidate = path.replace("DejaVuSans.ttf", "DejaVuSans-Bold.ttf") if bold else path
        if Path(candidate).is_file():
            return ImageFont.truetype(candidate, size)
    return ImageFont.load_default(size=size)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if draw.textlength(trial, font=font) <= width or not line:
            line = trial
        else:
            lines.append(line)
            line = word
    if line:
        lines.append(line)
    return lines


PANELS_PER_ROW = 4


def unique_panels(panels: list[ExplanationPanel]) -> list[ExplanationPanel]:
    """The panels in order, each (method, class, layer) once: the main view's map is also in
    the comparison grid, and the export should not show it twice."""
    seen, out = set(), []
    for p in panels:
        key = (p.method, p.target, p.layer)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def _panel_lines(e: ExplanationPanel) -> list[str]:
    """The caption under one exported map: method, class explained, layer, faithfulness."""
    lines = [e.method]
    if e.target:
        lines.append(f"for {e.target}")
    if e.layer:
        lines.append(f"layer {e.layer}")
    scores = [f"{name} {v:.2f}" for name, v in (("deletion AUC", e.deletion_auc), ("insertion AUC", e.insertion_auc))
              if v is not None]
    if scores:
        lines.append(" · ".join(scores))
    if e.note:
        lines.append(e.note)
    return lines


def _draw_panels(fig, draw, panels, x0: int, y: int, panel: int, gap: int, fonts) -> int:
    """Tiles in rows of PANELS_PER_ROW with their wrapped captions; returns the y below them."""
    text_font, small = fonts
    for row in range(0, len(panels), PANELS_PER_ROW):
        tallest = 0
        for i, (lines, image) in enumerate(panels[row:row + PANELS_PER_ROW]):
            x = x0 + i * (panel + gap)
            fig.paste(Image.fromarray(imaging.as_rgb_uint8(image)).resize((panel, panel), Image.BILINEAR), (x, y))
            wrapped = [w for n, line in enumerate(lines) for w in _wrap(draw, line, text_font if n == 0 else small, panel)]
            for j, line in enumerate(wrapped):
                draw.text((x, y + panel + 4 + 18 * j), line, font=text_font if j == 0 else small,
                          fill="#111" if j == 0 else "#555")
            tallest = max(tallest, 18 * len(wrapped))
        y += panel + tallest + 16
    return y


def _draw_bars(draw, report: CaseReport, margin: int, y: int, width: int, fonts) -> int:
    """Softmax above the Bayesian mean with its credible interval, per class; returns the y below."""
    text_font, small = fonts
    k_shown = min(len(report.class_names), 6)
    draw.text((margin, y), f"Prediction: {report.predicted}   ·   entropy {report.entropy:.2f} nats   ·   "
                           f"mutual information {report.mutual_information:.3f} nats", font=text_font, fill="#111")
    y += 28
    label_w, bar_w = 220, width - 2 * margin - 220 - 150
    for i in np.argsort(-np.asarray(report.bayes_mean))[:k_shown]:
        draw.text((margin, y + 4), report.class_names[i][:28], font=small, fill="#111")
        x0 = margin + label_w
        f, b = float(report.softmax[i]), float(report.bayes_mean[i])
        lo, hi = float(report.bayes_low[i]), float(report.bayes_high[i])
        draw.rectangle([x0, y, x0 + bar_w, y + 24], outline="#ddd")
        draw.rectangle([x0, y + 1, x0 + int(bar_w * f), y + 11], fill="#4c78a8")
        draw.rectangle([x0, y + 13, x0 + int(bar_w * b), y + 23], fill="#f58518")
        draw.line([x0 + int(bar_w * lo), y + 18, x0 + int(bar_w * hi), y + 18], fill="#222", width=2)
        draw.text((x0 + bar_w + 8, y + 4), f"{f:.0%} / {b:.0%}", font=small, fill="#111")
        y += 30
    legend = (f"blue: softmax (one pass) · orange: Bayesian mean ({report.bayes_method}) with 95% credible interval")
    for line in _wrap(draw, legend, small, width - 2 * margin - label_w):
        draw.text((margin + label_w, y + 2), line, font=small, fill="#555")
        y += 18
    return y + 12


def _draw_lines(draw, lines, margin: int, y: int, font, fill: str, step: int) -> int:
    for line in lines:
        draw.text((margin, y), line, font=font, fill=fill)
        y += step
    return y


def render_png(report: CaseReport, panel: int = 256) -> bytes:
    """The case as one PNG figure: the image and EVERY explanation panel (rows of four, each
    titled with method, class explained and layer), both confidences as bars, uncertainty,
    warnings, provenance and the disclaimer."""
    tiles = [(["Input" + (f" (true: {report.true_label})" if report.true_label else "")], report.image)]
    tiles += [(_panel_lines(e), e.overlay) for e in unique_panels(report.explanations)]
    margin, gap = 24, 16
    width = max(margin * 2 + min(len(tiles), PANELS_PER_ROW) * (panel + gap) - gap, 900)
    text_font, small, title_font = _font(15), _font(13), _font(22, bold=True)
    probe = ImageDraw.Draw(Image.new("RGB", (10, 10)))
    wrapped_notes = [line for n in report.warnings for line in _wrap(probe, "⚠ " + _plain(n), text_font, width - 2 * margin)]
    prov = [f"{k}: {v}" for k, v in list(report.model.items()) + list(report.data.items())]
    wrapped_prov = [line for p in prov for line in _wrap(probe, p, small, width - 2 * margin)]
    wrapped_disc = _wrap(probe, report.disclaimer, text_font, width - 2 * margin)
    rows = -(-len(tiles) // PANELS_PER_ROW)
    height = (margin + 60 + rows * (panel + 6 * 18 + 16) + 60 + 30 * min(len(report.class_names), 6) + 60
              + 22 * len(wrapped_notes) + 18 * len(wrapped_prov) + 22 * len(wrapped_disc) + margin + 20)
    fig = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(fig)
    draw.text((margin, margin), f"LifeLens · {report.task_title}", font=title_font, fill="#111")
    draw.text((margin, margin + 34), f"{report.case_name} ({report.source}) · {report.created}", font=small, fill="#555")
    y = _draw_panels(fig, draw, tiles, margin, margin + 60, panel, gap, (text_font, small))
    y = _draw_bars(draw, report, margin, y + 4, width, (text_font, small))
    y = _draw_lines(draw, wrapped_notes, margin, y, text_font, "#a15c00", 22)
    y = _draw_lines(draw, wrapped_prov, margin, y, small, "#444", 18)
    _draw_lines(draw, wrapped_disc, margin, y + 6, text_font, "#b00020", 22)
    fig = fig.crop((0, 0, width, min(height, y + 6 + 22 * len(wrapped_disc) + margin)))
    buffer = io.BytesIO()
    fig.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


# ----------------------------------------------------------------------------- HTML

def _data_uri(image: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(imaging.encode_png(imaging.as_rgb_uint8(image))).decode("ascii")


def render_html(report: CaseReport) -> str:
    """The case as one self-contained HTML page (images inlined as base64 PNG, no external
    resources), from ``templates/report.html.j2`` with every value autoescaped."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                             autoescape=True, keep_trailing_newline=True)
    rows = []
    for i in np.argsort(-np.asarray(report.bayes_mean)):
        lo, hi = float(report.bayes_low[i]), float(report.bayes_high[i])
        rows.append({"name": report.class_names[i], "f": float(report.softmax[i]), "b": float(report.bayes_mean[i]),
                     "lo": lo, "hi": hi, "width": max(hi - lo, 0.002)})
    panels = []
    for p in unique_panels(report.explanations):
        scores = ([f"deletion AUC {p.deletion_auc:.3f} (lower is better)"] if p.deletion_auc is not None else []) + (
            [f"insertion AUC {p.insertion_auc:.3f} (higher is better)"] if p.insertion_auc is not None else [])
        detail = " · ".join(x for x in (f"class {p.target}" if p.target else "", f"layer {p.layer}" if p.layer else "") if x)
        panels.append({"method": p.method, "uri": _data_uri(p.overlay),
                       "lines": [x for x in (detail, "; ".join(scores), p.note) if x]})
    return env.get_template("report.html.j2").render(
        r=report, rows=rows, panels=panels, image_uri=_data_uri(report.image),
        warnings=[_plain(w) for w in report.warnings])
