"""A minimal OpenAI-compatible chat server over a local Hugging Face model, to try the ``judge`` locator offline.

    python benchmarks/serve_chat.py --model_args pretrained=DIR,gguf_file=F.gguf --port 8011 &
    lm-eval-lrp ... --lrp --lrp_locate judge,trajectory \
        --lrp_judge model=local,base_url=http://127.0.0.1:8011/v1/chat/completions

``POST /v1/chat/completions`` with ``messages``, ``max_tokens``, ``stop``: the model's chat template, greedy
decoding; one request at a time. For measurement, not for serving: use vLLM, SGLang or llama.cpp's server for real
judges.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class ChatHandler(BaseHTTPRequestHandler):
    """``POST /v1/chat/completions``: the reply of :meth:`answer` (``body`` is the request) as an OpenAI chat
    completion. Subclasses give the answer (a model here; canned answers in the tests)."""

    def answer(self, body: dict) -> str:
        raise NotImplementedError

    def do_POST(self):  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = self.answer(body)
        for stop in body.get("stop") or []:
            if stop:
                text = text.split(stop)[0]
        reply = {"id": "local", "object": "chat.completion", "model": body.get("model", "local"),
                 "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}]}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


def main(argv=None) -> int:
    import torch

    from lm_eval_lrp.loading import load_model, load_tokenizer
    from lm_eval_lrp.model_args import load_spec, parse_model_args

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model_args", required=True, help="pretrained=DIR[,gguf_file=F.gguf]")
    p.add_argument("--port", type=int, default=8011)
    args = p.parse_args(argv)
    spec = load_spec(parse_model_args(args.model_args))
    tok, model = load_tokenizer(spec), load_model(spec, device="cpu", dtype="float32")
    lock = threading.Lock()

    class Handler(ChatHandler):
        def answer(self, body):
            ids = tok.apply_chat_template(body["messages"], add_generation_prompt=True, return_tensors="pt",
                                          return_dict=True)["input_ids"]
            with lock, torch.no_grad():
                out = model.generate(ids, max_new_tokens=int(body.get("max_tokens") or 16), do_sample=False,
                                     pad_token_id=tok.pad_token_id or tok.eos_token_id)
            return tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)

    print(f"serving {args.model_args} on http://127.0.0.1:{args.port}/v1/chat/completions", flush=True)
    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
