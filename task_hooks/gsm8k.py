"""GSM8K: the gold continuation is the worked answer ('... #### 18') exactly as the task's few-shot examples show it
(calculator annotations included), so teacher forcing follows the style the prompt asks for.

The divergence is the first token where the model's greedy choice leaves the gold solution (the default).
"""

from .default import GenerateUntilHook


class Gsm8kHook(GenerateUntilHook):
    families = ("gsm8k",)
    gold_field = "answer"


HOOK = Gsm8kHook()
