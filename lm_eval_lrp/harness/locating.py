"""generate_until failures: which token of the model's own output to explain, found by the task's locator chain.

The explained sequence is exactly what the model generated from and generated: lm-eval's context encoding for
``generate_until`` (the seam's ``generation_context``) followed by the model's output. The chain is
``--lrp_locate`` when given, else the default of the task's kind (:data:`lm_eval_lrp.locate.DEFAULT_CHAINS`:
math, code, instructions, other); the task's own scorer judges rollouts (the seam's ``TaskView.scorer``).
"""

from __future__ import annotations

from dataclasses import asdict

from ..failures import Case, Failure
from ..locate import Budget, Chain, ChainResult, Context, Generation, kind_of_task, options_from_needs
from ..locate.confidence import confidence
from .subject import Subject


class Locating:
    """The locate chain and context of one task."""

    def __init__(self, subject: Subject, task, hook):
        cfg = subject.config
        self.subject, self.task, self.hook = subject, task, hook
        self.kind = kind_of_task(task.name, hook)
        budget = Budget(max_rollouts=cfg.rollouts, max_new_tokens=cfg.rollout_tokens)
        given = {"budget": {"budget": budget}, "hook": {"hook": hook}}  # by need (lm_eval_lrp.locate.chain.NEEDS)
        if subject.reference is not None:
            given["reference"] = {"model": subject.reference, **subject.reference_options}
        if cfg.cases:
            given["cases"] = {"path": cfg.cases}
        if subject.judge is not None:
            given["judge"] = {"ask": subject.judge}
        if subject.prm is not None:
            given["prm"] = {"prm": subject.prm[0], "threshold": subject.prm[1]}
        options = options_from_needs(given)  # each locator gets what it declares it needs
        spec = cfg.locate or getattr(hook, "locate_chain", None)  # a hook's chain may name a locator it registered
        self.chain = Chain.from_names(spec, options) if spec else Chain.default(self.kind, options)
        if subject.judge is not None and not spec:  # judges the user gave are asked first, never left unused
            self.chain = Chain(Chain.from_names("judge", options).locators + self.chain.locators)
        self.ctx = Context.from_tokenizer(subject.tokenizer, subject.model, budget=budget, kind=self.kind)

    def prefetch(self, failures: list[Failure]) -> None:
        """Locators that work in batches (``prm``) see the task's failures first. A failure whose generation cannot
        be built is left out here; its own attempt, later, records the error."""
        links = [loc for link in self.chain.locators for loc in getattr(link, "locators", [link])]
        batched = [loc for loc in links if hasattr(loc, "prefetch")]
        if not batched:
            return
        gens = []
        for failure in failures:
            try:
                gens.append(self.generation(failure))
            except (KeyError, IndexError, TypeError, ValueError):
                continue
        for loc in batched:
            loc.prefetch(gens)

    def generation(self, failure: Failure) -> Generation:
        s = self.subject
        context, gen_kwargs = failure.requests[0][0], failure.gen_kwargs
        prompt_ids = s.generation_context(context, gen_kwargs.get("max_gen_toks"))
        output = failure.output
        gold = gold_as_prompted(context, self.hook.gold_continuation(self.task, failure.doc, failure.sample))
        until = gen_kwargs.get("until") or ()
        output_ids, self.ids_source = own_tokens(s, prompt_ids, output)
        return Generation(prompt_ids, output_ids, output, gold,
                          failure.doc, task=self.task.name, doc_id=failure.doc_id, prompt=context,
                          until=(until,) if isinstance(until, str) else tuple(until),
                          max_gen_toks=gen_kwargs.get("max_gen_toks") or s.max_gen_toks)

    def case(self, failure: Failure) -> tuple[Case, dict]:
        """The case to explain and the record's ``locate`` block (who chose the token, why, the evidence)."""
        gen = self.generation(failure)
        base = Case(prompt=gen.prompt, model_output=gen.output, gold=gen.gold or "")
        score = self.task.scorer(failure.doc, failure.filter, failure.metric)
        try:
            result = self.chain.locate(gen, self.ctx.for_doc(score))
        finally:
            self.ctx.release()
        block = _block(result, self.chain)
        block["output_tokens"] = self.ids_source  # "generated" (recorded during the evaluation) or "re-encoded"
        block["output_ids"] = list(gen.output_ids)  # what ``lm-eval-lrp explain --cases`` re-explains, without re-evaluating
        if gen.reached_max_gen_toks:  # cut by the budget: the located step may be right work that ran out of room
            block["reached_max_gen_toks"] = gen.max_gen_toks
        loc = result.location
        if result.error or loc is None or loc.contrast is None:  # the record keeps no token ids: the prompt's are here
            block["prompt_ids"] = list(gen.prompt_ids)
        if result.error:
            raise LocateFailed(result.error, block)
        if loc is None:
            base.skip = f"no locator found the token to explain ({result.reason})"
            return base, block
        if loc.contrast is None:
            base.skip = f"{loc.locator} located output token {loc.index} but found no contrast among the model's top-k"
            return base, block
        contrast = loc.to_contrast(gen)
        ids, cut = list(contrast.ids), 0
        limit = self.subject.max_length
        if limit and len(ids) > limit:
            cut = len(ids) - limit
            ids = ids[cut:]
            block["prompt_ids"] = list(gen.prompt_ids)  # the record's token ids are cut from the left
        return Case(ids=ids, position=len(ids) - 1, target=loc.target, contrast=loc.contrast,
                    n_prompt=max(0, len(gen.prompt_ids) - cut), prompt=gen.prompt, model_output=gen.output,
                    gold=gen.gold or "", truncated=cut, note=loc.reason), block


def own_tokens(subject: Subject, prompt_ids: list[int], output: str) -> tuple[list[int], str]:
    """The model's own output tokens: those it generated during the evaluation (recorded by the seam), up to the
    end of what the task scored (lm-eval cuts the text at the stop sequences); a re-encoding of the output text
    only when the generation was not recorded (a cached response, another process) or does not match it."""
    tok = subject.tokenizer
    generated = subject.generated(prompt_ids)
    if generated:
        stops = {tok.eos_token_id, tok.pad_token_id} - {None}
        ids = []
        for t in generated:
            if t in stops:
                break
            ids.append(t)
        text = ""
        for n in range(len(ids), -1, -1):  # the longest prefix whose text is a prefix of the scored output
            text = tok.decode(ids[:n], skip_special_tokens=True)
            if output.startswith(text):
                ids = ids[:n]
                break
        if ids and len(text) >= len(output.rstrip()):
            return ids, "generated"
    return tok.encode(output, add_special_tokens=False), "re-encoded"


def gold_as_prompted(context: str, gold: str | None) -> str | None:
    """The gold continuation as the prompt format produces it: without its delimiter's white space when the context
    already ends in white space (a chat template's assistant turn starts right after ``assistant\\n``)."""
    return gold.lstrip() if gold and context[-1:].isspace() else gold


class LocateFailed(Exception):
    """The chain could not judge the document (e.g. the task's scorer raised during a rollout)."""

    def __init__(self, message: str, block: dict):
        super().__init__(message)
        self.block = block


def _block(result: ChainResult, chain: Chain) -> dict:
    loc = result.location
    attempts = [asdict(a) for a in result.attempts]
    tried = [r for a in attempts for r in a.pop("rollouts")]  # rollouts of locators that found nothing
    out = {"chain": chain.names, "attempts": attempts}
    if tried:
        out["rollouts"] = tried
    if loc is not None:
        d = loc.as_dict()
        out.update(locator=loc.locator, reason=loc.reason, output_offset=loc.output_offset, explains=d["explains"],
                   index=loc.index, candidates=d["candidates"], rollouts=tried + d["rollouts"],
                   budget_exhausted=loc.budget_exhausted, seconds=round(loc.seconds, 4))
        out["confidence"], out["confidence_why"] = confidence(loc)
        if loc.agreeing:
            out["agreeing"] = list(loc.agreeing)
            out["evidence"] = {name: list(kinds) for name, kinds in loc.evidence.items()}  # independent or not
    return out
