"""The task-hook interface.

Hooks receive the task as a plain view (:class:`lm_eval_lrp.lmeval.tasks.TaskView`: ``name``, ``output_type``,
``target_delimiter``, ``description``, ``doc_to_text/target/choice``), never an lm-eval object.
"""

from __future__ import annotations

from lm_eval_lrp.lmeval.samples import sample_doc_id, sample_target
from lm_eval_lrp.segments import Segment, label_prompt
from lm_eval_lrp.task_kinds import has_signature_prompt


class HookError(Exception):
    """A hook could not do its part for one document (the gold, the prompt's segments): that document's error
    record names the hook and the document, rather than a wrong gold or unlabelled segments."""

    def __init__(self, hook: "TaskHook", what: str, sample_or_doc, err: BaseException):
        doc_id = sample_doc_id(sample_or_doc) if isinstance(sample_or_doc, dict) else None
        where = f"document {doc_id}" if doc_id is not None else "this document"
        super().__init__(f"hook {type(hook).__name__} could not {what} for {where}: {type(err).__name__}: {err}")


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
        if getattr(task, "constant_target", False):
            return None  # one literal target for every document (ifeval's 0): a placeholder, not a gold
        target = sample_target(sample)
        if isinstance(target, list):
            target = target[0] if target else None
        if target is None or (isinstance(target, str) and not target.strip()):
            return None
        if isinstance(target, int) and not isinstance(target, bool) and getattr(task, "has_choices", True):
            try:  # the index of a choice: its text is the gold (a task without choices: the int is the answer)
                target = task.doc_to_choice(doc)[target]
            except Exception as err:  # noqa: BLE001 - any failure here is named, never a wrong gold
                raise HookError(self, "build the gold (doc_to_choice)", sample, err) from err
        delimiter = task.target_delimiter or ""
        return f"{delimiter}{target}"

    #: the task's kind (math, code, instructions) when its name does not say it (see lm_eval_lrp.task_kinds)
    kind: str | None = None
    #: the locator chain of this hook's tasks when --lrp_locate names none (None: the default of the task's kind); a
    #: hook file may register its own locator (lm_eval_lrp.locate.register) and name it here
    locate_chain: str | None = None

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

    #: the prompt is a function's signature and docstring, labelled signature | docstring (None: the task's name says,
    #: see lm_eval_lrp.task_kinds.has_signature_prompt)
    code: bool | None = None

    def segments(self, task, doc, prompt: str) -> list[Segment]:
        """Label the prompt (see :func:`lm_eval_lrp.segments.label_prompt`)."""
        try:
            query = task.doc_to_text(doc)
        except Exception as err:  # noqa: BLE001 - named in the document's error record, never silently unlabelled
            raise HookError(self, "label the prompt's segments (doc_to_text)", doc, err) from err
        return label_prompt(prompt, query=query if isinstance(query, str) else None,
                            description=task.description,
                            code=self.code if self.code is not None else has_signature_prompt(task.name))
