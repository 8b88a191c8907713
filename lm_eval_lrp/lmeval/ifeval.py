"""IFEval's own instruction checkers (lm-eval's ``lm_eval.tasks.ifeval``) as plain callables over a doc.

``instruction_checks(doc)`` gives, per instruction of an IFEval doc, its id, its kwargs and a ``check(response) ->
bool`` built exactly as lm-eval's ``process_results`` builds it; ``score(doc)`` is the doc's verdict
(``prompt_level_strict_acc`` of lm-eval's ``process_results``) as ``score(response) -> bool`` — what the
``rollout`` locator needs. Where an output breaks an instruction is :mod:`lm_eval_lrp.locate.instructions`.

Needs lm-eval's ``ifeval`` extra (``langdetect``, ``immutabledict``, ``nltk``). Importing lm-eval's module tries
to download nltk's ``punkt_tab`` once (offline it prints an error and goes on); instructions that need punkt
(:data:`NEEDS_PUNKT`) then raise ``LookupError`` when checked.
"""

from __future__ import annotations

from typing import Callable

NEEDS_PUNKT = ("length_constraints:number_sentences", "change_case:capital_word_frequency")


def _registry():
    from lm_eval.tasks.ifeval import instructions_registry

    return instructions_registry.INSTRUCTION_DICT


def instruction_checks(doc: dict) -> list[tuple[str, dict, Callable[[str], bool]]]:
    """(instruction id, kwargs used, check) per instruction of an IFEval-schema doc (strict checking)."""
    registry = _registry()
    out = []
    for index, iid in enumerate(doc["instruction_id_list"]):
        if iid not in registry:
            raise KeyError(f"unknown IFEval instruction {iid!r}; known: {', '.join(sorted(registry))}")
        instruction = registry[iid](iid)
        kwargs = {k: v for k, v in (doc["kwargs"][index] or {}).items() if v}
        instruction.build_description(**kwargs)
        args = instruction.get_instruction_args()
        if args and "prompt" in args:
            instruction.build_description(prompt=doc["prompt"])

        def check(response: str, _instruction=instruction) -> bool:
            return bool(response.strip()) and bool(_instruction.check_following(response))

        out.append((iid, kwargs, check))
    return out


def failed_instructions(doc: dict, response: str) -> list[str]:
    """The ids of the instructions the response does not follow (strict)."""
    return [iid for iid, _, check in instruction_checks(doc) if not check(response)]


def score(doc: dict) -> Callable[[str], bool]:
    """``score(response)``: lm-eval's own ``process_results`` verdict on the whole prompt (strict accuracy)."""
    from lm_eval.tasks.ifeval import utils

    def verdict(response: str) -> bool:
        return bool(utils.process_results(doc, [response])["prompt_level_strict_acc"])

    return verdict
