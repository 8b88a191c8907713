"""Jinja2 pages (autoescaping on): the templates in ``templates/``, with the shared CSS and scripts inlined.

Data reaches the pages only through template variables, so it is escaped; the few pre-built fragments (SVG charts,
the heatmap's token spans) are built with :func:`~lm_eval_lrp.report.svg.esc` and passed as ``Markup``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, Undefined
from markupsafe import Markup

from .svg import PATTERN_COLOURS, esc, fmt
from .where import visible

TEMPLATES = Path(__file__).with_name("templates")
# heatmap colour classes p1…p10 (towards the wrong token, red) and n1…n10 (towards the correct one, blue)
BUCKETS = "\n".join(
    f".p{k}{{background:rgba(198,40,40,{k / 10:.1f})}} .n{k}{{background:rgba(21,101,192,{k / 10:.1f})}}"
    + (f" .p{k},.n{k}{{color:#fff}}" if k >= 6 else "")
    for k in range(1, 11)
)


def _defined(value):
    return None if isinstance(value, Undefined) else value


def tok(value) -> str:
    """A token on a chip: its repr; white space and empty tokens as visible symbols (``⏎``, ``␣``, ``∅``)."""
    value = _defined(value)
    if value is None:
        return "–"
    return repr(value) if str(value).strip() else visible(str(value))


def fmt_filter(value, spec: str = ".3g") -> str:
    value = _defined(value)
    return fmt(value, spec) if isinstance(value, (int, float)) or value is None else str(value)


def badge(label: str) -> Markup:
    return Markup(f'<span class="pat" style="background:{PATTERN_COLOURS.get(label, "#999")}">{esc(label)}</span>')


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = fmt_filter
    env.filters["tok"] = tok
    env.globals["badge"] = badge
    env.globals["static"] = {
        "css": Markup((TEMPLATES / "report.css").read_text(encoding="utf-8") + BUCKETS),
        "js": Markup((TEMPLATES / "report.js").read_text(encoding="utf-8")),
        "index_js": Markup((TEMPLATES / "index.js").read_text(encoding="utf-8")),
    }
    return env


def render(template: str, **context) -> str:
    return environment().get_template(template).render(**context)


def script_json(value) -> Markup:
    """JSON for a ``<script type="application/json">`` block: ``<``, ``>`` and ``&`` escaped so data never ends it."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))
