"""``gold``: the first token where the model's greedy choice leaves the gold continuation, teacher-forced after the
prompt (the explanation lm-eval-lrp gave before locators). Target = the model's greedy token, contrast = the gold
token; the position indexes the gold continuation. Where the gold's first tokens are the output's own and the greedy
token is the output's next one, that is the model's own output token, and ``output_offset`` says where it starts;
otherwise it is None.
"""

from __future__ import annotations

from .context import Context, scan
from .types import Candidate, Generation, Location, NotFound


class GoldLocator:
    name = "gold"
    needs = ("hook",)
    evidence = ("gold", "model")

    def __init__(self, hook=None):
        """The task's hook, when given: its ``locate_divergence(gold_text, gold_ids, greedy_ids, decode) -> index |
        None`` overrides "first differing token"."""
        self.divergence = getattr(hook, "locate_divergence", None)

    def locate(self, gen: Generation, ctx: Context) -> Location:
        if not gen.gold or not gen.gold.strip():
            raise NotFound("no gold continuation for this task")
        if ctx.model is None or ctx.encode is None:
            raise NotFound("needs the model and its tokenizer")
        gold_ids = list(ctx.encode(gen.gold))
        if not gold_ids:
            raise NotFound("empty gold continuation")
        s = scan(ctx.model, gen.prompt_ids, gold_ids, ctx.topk, keep_cache=False)
        greedy = s.topk_ids[:, 0].tolist()
        if self.divergence is not None:
            k = self.divergence(gen.gold, gold_ids, greedy, ctx.decode)
        else:
            k = next((i for i, (g, p) in enumerate(zip(gold_ids, greedy)) if g != p), None)
        if k is None:
            raise NotFound("greedy decoding follows the gold continuation")
        if greedy[k] == gold_ids[k]:
            raise NotFound("no valid contrast at the located position")
        # the gold's first k tokens are the output's and the greedy token is the output's own: the explained token is
        # the model's own output token k (its place in the output is known)
        own = k < len(gen.output_ids) and list(gen.output_ids[:k]) == gold_ids[:k] and gen.output_ids[k] == greedy[k]
        offset = ctx.offsets(gen.output_ids)[k] if own else None
        cand = Candidate(k, offset, ctx.decode([gold_ids[k]]), s.alternatives(k, ctx.decode), "first divergence from the gold")
        return Location(k, greedy[k], gold_ids[k], self.name,
                        f"first token where the greedy choice leaves the teacher-forced gold (gold token {k})",
                        output_offset=offset, continuation=tuple(gold_ids), candidates=[cand])
