"""GSM8K: the gold continuation is the worked answer ('... #### 18'), without the <<calculator>> annotations.

The divergence is the first token where the model's greedy choice leaves the gold solution (the default).
The prompt's few-shot examples, question and answer-so-far are labelled by the default segments.
"""

import re

from .default import GenerateUntilHook


class Gsm8kHook(GenerateUntilHook):
    families = ("gsm8k",)

    def gold_continuation(self, task, doc, sample):
        answer = doc.get("answer") if isinstance(doc, dict) else None
        if not answer:
            return super().gold_continuation(task, doc, sample)
        answer = re.sub(r"<<[^>]*>>", "", answer)  # calculator annotations are not part of what models write
        delimiter = getattr(task.config, "target_delimiter", " ") or ""
        return f"{delimiter}{answer}"


HOOK = Gsm8kHook()
