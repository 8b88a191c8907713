"""What a task is, decided here and nowhere else, from its name (and its hook, when one says otherwise).

A task's kind — ``math``, ``code``, ``instructions``, or None (other) — picks the default locator chain
(:data:`lm_eval_lrp.locate.DEFAULT_CHAINS`) and the verifiers that apply. The task hook's ``kind`` wins; else the
longest known prefix of the task's name; a verifier that meets a document of a task of no known kind reads the
document's fields (:func:`kind_of_doc`).

A task's prompt shape: whether its prompt is a function's signature and docstring, labelled ``signature`` |
``docstring`` by :func:`lm_eval_lrp.segments.label_prompt` (:func:`has_signature_prompt`). Not every code task has
one: MBPP's prompt is a problem statement and its tests.
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


#: task-name prefixes whose prompts are a function's signature and docstring (a task hook's ``code`` says otherwise)
SIGNATURE_PROMPT_PREFIXES = ("humaneval",)


def has_signature_prompt(task: str | None) -> bool:
    """Whether the prompts of the task named ``task`` are a function's signature and docstring: the hooks label them
    so when a run explains them, and the report labels a stored record's prompt the same way."""
    return str(task or "").startswith(SIGNATURE_PROMPT_PREFIXES)


def kind_of_doc(doc) -> str:
    """The kind of a document of a task of no known kind, by its fields: IFEval's ``instruction_id_list``, a code
    task's ``entry_point`` / ``test_list`` / ``canonical_solution``; else ``math``."""
    doc = doc if isinstance(doc, dict) else {}
    if "instruction_id_list" in doc:
        return "instructions"
    if any(k in doc for k in ("entry_point", "test_list", "canonical_solution")):
        return "code"
    return "math"
