"""The task-hook interface.

Hooks receive the task as a plain view (:class:`lm_eval_lrp.lmeval.tasks.TaskView`: ``name``, ``output_type``,
``target_delimiter``, ``description``, ``doc_to_text/target/choice``), never an lm-eval object.
"""

from __future__ import annotations

from lm_eval_lrp.lmeval.samples import sample_target
from lm_eval_lrp.segments import Segment, label_prompt


class TaskHook:
    """Defaults that suit most tasks; subclasses override what their family needs."""

    #: task-name prefixes this hook serves (e.g. ``("arc_",)``)
    families: tuple[str, ...] = ()
    #: document field holding the gold continuation of a generate_until task (None: the task's target)
    gold_field: str | None = None
    #: text put between prompt and gold (None: the task's ``target_delimiter``)
    gold_delimiter: str | None = None

    def gold_continuation(self, task, doc, sample) -> str | None:
        """Text to teacher-force after the prompt for a generate_until task (None: the task has no gold)."""
        value = doc.get(self.gold_field) if self.gold_field and isinstance(doc, dict) else None
        if value:
            delimiter = self.gold_delimiter
            if delimiter is None:
                delimiter = task.target_delimiter or ""
            return f"{delimiter}{value}"
        target = sample_target(sample)
        if isinstance(target, list):
            target = target[0] if target else None
        if target is None or (isinstance(target, str) and not target.strip()):
            return None
        if isinstance(target, int) and not isinstance(target, bool):
            try:
                choices = task.doc_to_choice(doc)
                target = choices[target]
            except Exception:  # noqa: BLE001 - a task without choices: the int is the answer itself
                pass
        delimiter = task.target_delimiter or ""
        return f"{delimiter}{target}"

    #: skip divergences where both tokens are white space only (code: formatting, not content)
    skip_whitespace: bool = False

    def locate_divergence(self, gold_text: str, gold_ids: list[int], greedy_ids: list[int], decode) -> int | None:
        """Index into the gold continuation to explain; default: the first token where greedy ≠ gold."""
        for k, (g, p) in enumerate(zip(gold_ids, greedy_ids)):
            if g != p:
                if self.skip_whitespace and not decode([g]).strip() and not decode([p]).strip():
                    continue
                return k
        return None

    #: code prompts are labelled signature | docstring
    code: bool = False

    def segments(self, task, doc, prompt: str) -> list[Segment]:
        """Label the prompt (see :func:`lm_eval_lrp.segments.label_prompt`)."""
        try:
            query = task.doc_to_text(doc)
        except Exception:  # noqa: BLE001 - a task whose doc_to_text needs more than the doc
            query = None
        return label_prompt(prompt, query=query if isinstance(query, str) else None,
                            description=task.description, code=self.code)
