"""A task's ``doc_to_text`` / ``doc_to_choice`` with its Jinja template compiled once, not at every call.

lm-eval renders a string template with ``utils.apply_template``, which compiles it anew at each call (about 1–4 ms
on a CPU, more than the rest of a record's host work). For a :class:`ConfigurableTask` that neither overrides the
method nor uses a promptsource prompt, and whose template is not a field name, the function here renders the same
template with lm-eval's own Jinja environment, compiled once, and post-processes the text as lm-eval 0.4 does.
Anything else gets the task's own method unchanged.
"""

from __future__ import annotations

import ast
from typing import Any, Callable


def _text(task, text: str):
    return ast.literal_eval(text) if text.isdigit() and task._config.doc_to_choice is not None else text


def _choice(task, text: str):
    return ast.literal_eval(text)


_AFTER = {"doc_to_text": _text, "doc_to_choice": _choice}


def _template(task, name: str) -> str | None:
    """The string template of ``name`` when lm-eval would render it through ``apply_template``, else None."""
    from lm_eval.api.task import ConfigurableTask

    if not isinstance(task, ConfigurableTask) or getattr(type(task), name) is not getattr(ConfigurableTask, name):
        return None
    if getattr(task, "prompt", None) is not None:
        return None
    template = getattr(task.config, name, None)
    if not isinstance(template, str):
        return None
    try:
        if template in task.features:
            return None
    except (AttributeError, TypeError, KeyError):  # no dataset features to tell a field name from a template
        return None
    return template


def compiled(task, name: str) -> Callable[[Any], Any] | None:
    """``task.<name>`` (``doc_to_text`` or ``doc_to_choice``), its template compiled once where that is exact."""
    method = getattr(task, name, None)
    template = _template(task, name) if method is not None else None
    if template is None:
        return method
    from lm_eval.utils import env

    after = _AFTER[name]
    jinja = env.from_string(template)

    def render(doc):
        return after(task, jinja.render(**doc))

    return render
