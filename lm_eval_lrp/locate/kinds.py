"""A task's kind — ``math``, ``code``, ``instructions``, or None (other) — decided here and nowhere else: it picks
the default locator chain (:data:`lm_eval_lrp.locate.DEFAULT_CHAINS`) and the verifiers that apply.

The task hook's ``kind`` wins; else the longest known prefix of the task's name; a verifier that meets a document of
a task of no known kind reads the document's fields (:func:`kind_of_doc`).
"""

from __future__ import annotations

#: task-name prefixes of the task kinds (a task hook's ``kind`` says otherwise)
KIND_BY_PREFIX = {"gsm8k": "math", "hendrycks_math": "math", "minerva_math": "math", "math": "math",
                  "humaneval": "code", "mbpp": "code", "ifeval": "instructions", "ifbench": "instructions"}


def kind_of_task(task: str, hook=None) -> str | None:
    """The kind of the task named ``task``: its hook's ``kind`` when it names one, else by the name's longest known
    prefix; None: no known kind."""
    if getattr(hook, "kind", None):
        return hook.kind
    best = max((p for p in KIND_BY_PREFIX if task.startswith(p)), key=len, default=None)
    return KIND_BY_PREFIX[best] if best else None


def kind_of_doc(doc) -> str:
    """The kind of a document of a task of no known kind, by its fields: IFEval's ``instruction_id_list``, a code
    task's ``entry_point`` / ``test_list`` / ``canonical_solution``; else ``math``."""
    doc = doc if isinstance(doc, dict) else {}
    if "instruction_id_list" in doc:
        return "instructions"
    if any(k in doc for k in ("entry_point", "test_list", "canonical_solution")):
        return "code"
    return "math"
