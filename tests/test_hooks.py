"""Task hooks and prompt segments (no model needed)."""

from __future__ import annotations

import torch

from lm_eval_lrp.failures import Case
from lm_eval_lrp.lmeval.tasks import TaskView
from lm_eval_lrp.segments import char_spans, segment_sums
from task_hooks import HookRegistry, Segment, load_hooks_from


def _task(description="", delimiter=" "):
    return TaskView("t", "generate_until", target_delimiter=delimiter, description=description,
                    _doc_to_text=lambda d: d["q"], _doc_to_choice=lambda d: ["a", "b"])


def test_registry_picks_the_family_hook_and_defaults():
    reg = HookRegistry()
    assert type(reg.for_task("arc_challenge", "multiple_choice")).__name__ == "ArcHook"
    assert type(reg.for_task("gsm8k_cot", "generate_until")).__name__ == "Gsm8kHook"
    assert type(reg.for_task("my_task", "multiple_choice")).__name__ == "MultipleChoiceHook"
    assert type(reg.for_task("my_task", "generate_until")).__name__ == "GenerateUntilHook"


def test_user_hooks_from_a_folder_win(tmp_path):
    (tmp_path / "mine.py").write_text(
        "from task_hooks import TaskHook\n"
        "class Mine(TaskHook):\n    families = ('gsm8k',)\n    gold_field = 'solution'\n"
        "HOOK = Mine()\n")
    reg = HookRegistry(load_hooks_from(tmp_path))
    hook = reg.for_task("gsm8k", "generate_until")
    assert type(hook).__name__ == "Mine"
    assert hook.gold_continuation(_task(), {"solution": "42"}, {}) == " 42"


def test_gold_continuations():
    reg = HookRegistry()
    t = _task()
    assert reg.for_task("gsm8k", "generate_until").gold_continuation(t, {"answer": "a #### 2"}, {}) == " a #### 2"
    assert reg.for_task("humaneval", "generate_until").gold_continuation(t, {"canonical_solution": "    return 1"}, {}) == "    return 1"
    assert reg.for_task("humaneval", "generate_until").gold_continuation(t, {}, {}) is None
    default = reg.for_task("x", "generate_until")
    assert default.gold_continuation(t, {}, {"target": "7"}) == " 7"
    assert default.gold_continuation(t, {}, {"target": ""}) is None
    assert default.gold_continuation(t, {}, {"target": 1}) == " b"  # an index into the task's choices


def test_code_hooks_skip_whitespace_divergences():
    decode = {1: "    ", 2: "\n\n", 3: "return", 4: "pass"}
    dec = lambda ids: "".join(decode[i] for i in ids)  # noqa: E731
    code = HookRegistry().for_task("humaneval", "generate_until")
    assert code.locate_divergence("", [1, 3], [2, 4], dec) == 1
    assert HookRegistry().for_task("x", "generate_until").locate_divergence("", [1, 3], [2, 4], dec) == 0
    assert code.locate_divergence("", [1, 3], [1, 3], dec) is None


def test_default_segments():
    hook = HookRegistry().for_task("x", "multiple_choice")
    prompt = "Be careful.\n\nQ: 1?\nA: 2\n\nQ: 3?"
    segs = hook.segments(_task(description="Be careful.\n\n"), {"q": "Q: 3?"}, prompt)
    assert [s.label for s in segs] == ["instruction", "fewshot", "query"]
    assert prompt[segs[-1].start:segs[-1].end] == "Q: 3?"


def test_segment_sums_and_spans():
    rel = torch.tensor([1.0, 2.0, 3.0, 4.0])
    spans = [(0, 0), (0, 3), (3, 6), (6, 9)]  # a BOS, then three tokens of "abcdefghi"
    segs = [Segment("fewshot", 0, 3), Segment("query", 3, 9)]
    assert segment_sums(segs, spans, rel, n_prompt=3) == {"fewshot": 2.0, "query": 3.0, "answer_so_far": 4.0}

    class Tok:
        def __call__(self, text, add_special_tokens=False, return_offsets_mapping=True):
            words = text.split(" ")
            offs, pos = [], 0
            for w in words:
                offs.append((pos, pos + len(w)))
                pos += len(w) + 1
            return {"input_ids": list(range(10, 10 + len(words))), "offset_mapping": offs}

    assert char_spans(Tok(), "ab cd", [0, 10, 11]) == [(0, 0), (0, 2), (3, 5)]
    assert char_spans(Tok(), "ab cd", [10, 99]) is None
    assert Case().skip is None
