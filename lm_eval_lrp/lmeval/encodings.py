"""The (context, continuation) token ids lm-eval computed while scoring, kept for the attribution of its failures.

lm-eval's loglikelihood requests go through ``_encode_pair(context, continuation)`` (two tokenisations each: the
whole text and the context). A failure is explained on exactly those ids; the harness used to tokenise its two
choices again (four more tokenisations per failure). :class:`PairEncodings` keeps what ``_encode_pair`` returned:
the context's ids once per context (all choices of a document share it), the continuation's per pair, as compact
integer arrays keyed by the strings lm-eval already holds. A pair not seen (lm-eval's request cache answered it, or
another path) is encoded again by the caller.
"""

from __future__ import annotations

from array import array


class PairEncodings:
    """What ``_encode_pair`` returned, per (context, continuation)."""

    def __init__(self):
        self._contexts: dict[str, array] = {}
        self._pairs: dict[tuple[str, str], tuple[array, array]] = {}

    def __len__(self) -> int:
        return len(self._pairs)

    def keep(self, context: str, continuation: str, pair: tuple[list[int], list[int]]) -> None:
        ctx_ids, cont_ids = pair
        ctx = array("i", ctx_ids)  # token ids fit 32 bits: 4 bytes a token
        shared = self._contexts.setdefault(context, ctx)
        if shared != ctx:  # not the same ids for the same context (an encoder that looks at the pair): its own
            shared = ctx
        self._pairs[(context, continuation)] = (shared, array("i", cont_ids))

    def get(self, context: str, continuation: str) -> tuple[list[int], list[int]] | None:
        """The ids kept for this pair (fresh lists), or None."""
        found = self._pairs.get((context, continuation))
        if found is None:
            return None
        return found[0].tolist(), found[1].tolist()

    def clear(self) -> None:
        self._contexts.clear()
        self._pairs.clear()
