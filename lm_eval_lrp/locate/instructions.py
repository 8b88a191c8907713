"""Where an output first breaks an IFEval-style instruction: pure text, driven by the instruction id and kwargs
(IFEval's own names, e.g. ``punctuation:no_comma``, ``length_constraints:number_words`` with ``num_words`` and
``relation``). Each finder returns a :class:`Violation` — the char offset of the first offending character, or
``len(text)`` when something required was due where the model stopped — or None when the output keeps it.

The verdict of record is lm-eval's own checker (:mod:`lm_eval_lrp.lmeval.ifeval`); these finders say *where*.
Instructions that need nltk's punkt data (``length_constraints:number_sentences``,
``change_case:capital_word_frequency``) or language detection (``language:response_language``) are not located.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Violation:
    instruction: str
    offset: int
    reason: str
    accept: Callable[[str], bool]  # which alternative token texts keep the instruction (contrast candidates)


def stops(piece: str) -> bool:
    """Kept by ending here: an alternative that writes nothing visible (the end of text, white space)."""
    return piece.strip() == ""


def _starts(wanted: str) -> Callable[[str], bool]:
    wanted = wanted.strip().lower()
    return lambda piece: bool(piece.strip()) and wanted.startswith(piece.strip().lower())


def _no_comma(text, kw):
    i = text.find(",")
    return None if i < 0 else (i, "a comma under 'no commas'", lambda p: "," not in p)


def _lowercase(text, kw):
    m = re.search(r"[A-Z]", text)
    return None if m is None else (m.start(), f"uppercase {m.group()!r} under 'all lowercase'", lambda p: p == p.lower())


def _capital(text, kw):
    m = re.search(r"[a-z]", text)
    return None if m is None else (m.start(), f"lowercase {m.group()!r} under 'all capitals'", lambda p: p == p.upper())


def _words(text, kw):
    n, relation = int(kw.get("num_words") or 0), kw.get("relation") or "less than"
    words = list(re.finditer(r"\w+", text))
    if relation == "less than" and len(words) >= n:
        return words[n - 1].start(), f"word {n} reaches the limit (fewer than {n} words)", stops
    if relation == "at least" and len(words) < n:
        return len(text), f"stopped after {len(words)} words (at least {n})", lambda p: not stops(p)
    return None


def _forbidden(text, kw):
    hits = [m for w in kw.get("forbidden_words") or [] for m in re.finditer(rf"\b{re.escape(w)}\b", text, re.I)]
    if not hits:
        return None
    m = min(hits, key=lambda m: m.start())
    return m.start(), f"forbidden word {m.group()!r}", lambda p: m.group().lower()[:2] not in p.lower()


def _existence(text, kw):
    missing = [k for k in kw.get("keywords") or [] if not re.search(re.escape(k), text, re.I)]
    return None if not missing else (len(text), f"keyword {missing[0]!r} never used", _starts(missing[0]))


def _frequency(text, kw):
    word, n, relation = kw.get("keyword") or "", int(kw.get("frequency") or 0), kw.get("relation") or "less than"
    hits = list(re.finditer(re.escape(word), text, re.I)) if word else []
    if relation == "less than" and len(hits) >= n > 0:
        return hits[n - 1].start(), f"{word!r} used {n} times (fewer than {n})", lambda p: word[:2].lower() not in p.lower()
    if relation == "at least" and len(hits) < n:
        return len(text), f"{word!r} used {len(hits)} times (at least {n})", _starts(word)
    return None


def _letters(text, kw):
    letter, n = (kw.get("letter") or "").lower(), int(kw.get("let_frequency") or 0)
    relation = kw.get("let_relation") or "less than"
    hits = [i for i, c in enumerate(text.lower()) if c == letter] if letter else []
    if relation == "less than" and len(hits) >= n > 0:
        return hits[n - 1], f"letter {letter!r} used {n} times (fewer than {n})", lambda p: letter not in p.lower()
    if relation == "at least" and len(hits) < n:
        return len(text), f"letter {letter!r} used {len(hits)} times (at least {n})", lambda p: letter in p.lower()
    return None


def _ending(text, kw):
    phrase = (kw.get("end_phrase") or "").strip()
    if not phrase or text.strip().lower().endswith(phrase.lower()):
        return None
    i = text.lower().find(phrase.lower())
    if i >= 0:
        return i + len(phrase), f"went on after the required ending {phrase!r}", stops
    return _misquoted(text, phrase) or (len(text), f"stopped without the required ending {phrase!r}", _starts(phrase))


def _misquoted(text, phrase):
    """The output's last sentence as a near copy of the required ending (at least half of the phrase's words, in
    order): the first word where it departs from the phrase, whose alternative is the phrase's word there."""
    body = text.rstrip()
    start = max((m.end() for m in re.finditer(r"[.!?]\s+|\n", body[:-1])), default=0)
    said = list(re.finditer(r"\w+", body[start:]))
    wanted = list(re.finditer(r"\w+", phrase))
    matcher = difflib.SequenceMatcher(None, [w.group().lower() for w in wanted], [w.group().lower() for w in said],
                                      autojunk=False)
    if not said or 2 * sum(b.size for b in matcher.get_matching_blocks()) < len(wanted):
        return None
    first = next((op for op in matcher.get_opcodes() if op[0] != "equal"), None)
    if first is None:  # the same words: the punctuation after them departs ("... help with." for "... with?")
        rest = phrase[wanted[-1].end():]
        return (start + said[-1].end(), f"the last sentence ends the required ending {phrase!r} with other "
                "punctuation", _starts(rest) if rest.strip() else stops)
    _, a, _, b, _ = first
    at = start + (said[b].start() if b < len(said) else len(body) - start)
    rest = phrase[wanted[a].start():] if a < len(wanted) else ""
    word = said[b].group() if b < len(said) else "the end"
    return at, f"the last sentence misquotes the required ending {phrase!r} at {word!r}", _starts(rest or phrase)


def _quotation(text, kw):
    t = text.strip()
    if len(t) > 1 and t[0] == '"' and t[-1] == '"':
        return None
    lead = len(text) - len(text.lstrip())
    if not t.startswith('"'):
        return lead, "the response is not wrapped in double quotes", lambda p: p.strip().startswith('"')
    return len(text), "the closing double quote is missing", lambda p: p.strip().startswith('"')


def _title(text, kw):
    if re.search(r"<<[^\n]+>>", text):
        return None
    return len(text) - len(text.lstrip()), "no title in <<double angular brackets>>", lambda p: p.strip().startswith("<")


def _postscript(text, kw):
    marker = kw.get("postscript_marker") or "P.S."
    if re.search(r"\s*" + re.escape(marker.lower()) + r".*$", text.lower(), re.M):
        return None
    return len(text), f"no postscript starting with {marker!r}", _starts(marker)


def _json(text, kw):
    body = text.strip()
    for fence in ("```json", "```Json", "```JSON", "```"):
        body = body.removeprefix(fence)
    body = body.removesuffix("```").strip()
    try:
        json.loads(body)
        return None
    except json.JSONDecodeError as err:
        start = text.find(body[:20]) if body else 0
        return max(0, start) + err.pos, f"not JSON: {err.msg}", lambda p: True


def _bullets(text, kw):
    n = int(kw.get("num_bullets") or 0)
    items = sorted(list(re.finditer(r"^\s*\*[^\*].*$", text, re.M)) + list(re.finditer(r"^\s*-.*$", text, re.M)),
                   key=lambda m: m.start())
    if len(items) > n:
        m = items[n]
        return m.start() + len(m.group()) - len(m.group().lstrip()), f"bullet {n + 1} of a list of exactly {n}", lambda p: "*" not in p and "-" not in p
    if len(items) < n:
        return len(text), f"{len(items)} bullets of {n}", lambda p: "*" in p or "-" in p
    return None


def _paragraphs(text, kw):
    n = int(kw.get("num_paragraphs") or 0)
    seps = list(re.finditer(r"\s?\*\*\*\s?", text))
    if len(seps) + 1 > n and n > 0:
        return seps[n - 1].start(), f"paragraph {n + 1} of exactly {n}", stops
    if len(seps) + 1 < n:
        breaks = list(re.finditer(r"\n[ \t]*\n\s*(?=\S)", text.strip())) if not seps else []
        if breaks:  # paragraphs set apart by blank lines only: the divider belongs at the first break
            at = len(text) - len(text.lstrip()) + breaks[0].end()
            return (at, f"paragraph 2 starts without the *** divider ({n} paragraphs asked)",
                    lambda p: bool(p.strip()) and set(p.strip()) == {"*"})
        return len(text), f"{len(seps) + 1} paragraphs of {n}", lambda p: "*" in p
    return None


def _repeat(text, kw):
    prompt = (kw.get("prompt_to_repeat") or "").strip()
    t, lead = text.strip(), len(text) - len(text.lstrip())
    if not prompt or t.lower().startswith(prompt.lower()):
        return None
    k = next((i for i, (a, b) in enumerate(zip(t.lower(), prompt.lower())) if a != b), min(len(t), len(prompt)))
    return lead + k, "the request is not repeated word for word", _starts(prompt[k:])


FINDERS: dict[str, Callable] = {
    "punctuation:no_comma": _no_comma,
    "change_case:english_lowercase": _lowercase,
    "change_case:english_capital": _capital,
    "length_constraints:number_words": _words,
    "keywords:forbidden_words": _forbidden,
    "keywords:existence": _existence,
    "keywords:frequency": _frequency,
    "keywords:letter_frequency": _letters,
    "startend:end_checker": _ending,
    "startend:quotation": _quotation,
    "detectable_format:title": _title,
    "detectable_content:postscript": _postscript,
    "detectable_format:json_format": _json,
    "detectable_format:number_bullet_lists": _bullets,
    "length_constraints:number_paragraphs": _paragraphs,
    "combination:repeat_prompt": _repeat,
}


def violations(text: str, instruction_ids: list[str], kwargs: list[dict | None]) -> list[Violation]:
    """The located violations of an IFEval doc's instructions, earliest first (unlocatable ids are left out)."""
    out = []
    for iid, kw in zip(instruction_ids, list(kwargs) + [None] * (len(instruction_ids) - len(kwargs))):
        finder = FINDERS.get(iid)
        if finder is None:
            continue
        hit = finder(text, {k: v for k, v in (kw or {}).items() if v is not None})
        if hit is not None:
            out.append(Violation(iid, *hit))
    return sorted(out, key=lambda v: v.offset)
