"""``reference``: a second (stronger) model of the same tokenizer reads the failed output, teacher-forced after the
same prompt; the target is the first output token whose log-prob under the reference falls more than ``gap`` nats
below the reference's own best choice there; the contrast is that choice when it is among the evaluated model's
top-k at that position (else none). No LRP runs on the reference.
"""

from __future__ import annotations

from .context import Context, scan
from .types import Generation, Location, NotFound


def check_same_tokenizer(reference, evaluated) -> None:
    """Refuse a reference whose tokenizer differs from the evaluated model's (token ids would mean other things)."""
    ref, ev = reference.get_vocab(), evaluated.get_vocab()
    if ref == ev:
        return
    differ = len(set(ref.items()) ^ set(ev.items()))
    raise ValueError(
        f"the reference model's tokenizer differs from the evaluated model's ({len(ref)} vs {len(ev)} tokens, "
        f"{differ} (token, id) pairs differ): a reference must share the evaluated model's tokenizer — pick a "
        "sibling of the same family (e.g. Qwen2.5-Coder-1.5B-Instruct for Qwen2.5-Coder-0.5B-Instruct)")


class ReferenceLocator:
    name = "reference"

    def __init__(self, model=None, tokenizer=None, evaluated_tokenizer=None, gap: float = 3.0):
        """``tokenizer`` and ``evaluated_tokenizer`` are compared here, before evaluation starts."""
        if model is None:
            raise ValueError("the reference locator needs a reference model (a Hugging Face causal LM): model=...")
        if tokenizer is not None and evaluated_tokenizer is not None:
            check_same_tokenizer(tokenizer, evaluated_tokenizer)
        self.model, self.gap = model, float(gap)

    def locate(self, gen: Generation, ctx: Context) -> Location:
        if not gen.output_ids:
            raise NotFound("empty output")
        s = scan(self.model, gen.prompt_ids, gen.output_ids, k=1, keep_cache=False)
        gaps = (s.topk_logprobs[:, 0] - s.chosen_logprobs).tolist()
        i = next((j for j, g in enumerate(gaps) if g > self.gap), None)
        if i is None:
            raise NotFound(f"the reference model finds no output token more than {self.gap:g} nats below its best choice")
        best = int(s.topk_ids[i, 0])
        contrast = None
        if ctx.model is not None and best in ctx.scan(gen).topk_ids[i].tolist() and best != gen.output_ids[i]:
            contrast = best
        reason = (f"the reference model puts output token {i} ({ctx.decode([gen.output_ids[i]])!r}) {gaps[i]:.2f} nats "
                  f"below its choice {ctx.decode([best])!r}" + ("" if contrast is not None else
                                                                " (not in the evaluated model's top-k: no contrast)"))
        cand = ctx.candidate(gen, i, "reference gap")
        return Location(i, gen.output_ids[i], contrast, self.name, reason,
                        output_offset=ctx.offsets(gen.output_ids)[i], candidates=[cand])
