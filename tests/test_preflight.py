"""Refused before evaluating (issue #26): each refusal is one line naming the fix, exit code 2, nothing loaded.

The main model named in these command lines does not exist: a check that let the run through would fail later
with another message and exit code 1, so exit code 2 with the expected line shows the check came first.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from lm_eval_lrp.cli import main, preflight
from lm_eval_lrp.preflight import Refusal, check_judges, check_reference


def _argv(*extra: str, tasks: str = "gsm8k") -> list[str]:
    return ["--model", "hf", "--model_args", "pretrained=/nonexistent/model", "--tasks", tasks, "--device", "cpu",
            "--lrp", *extra]


def _run(capsys, *extra: str, tasks: str = "gsm8k") -> tuple[int, str]:
    with pytest.raises(SystemExit) as stop:
        main(_argv(*extra, tasks=tasks))
    err = capsys.readouterr().err.strip()
    return stop.value.code, err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """A local OpenAI-style chat server answering every POST with ``status`` and ``body``."""

    def __init__(self, status: int, body: dict):
        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/v1/chat/completions"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_an_output_path_that_is_a_file_is_refused(tmp_path, capsys):
    existing = tmp_path / "results.txt"
    existing.write_text("x")
    code, err = _run(capsys, "--output_path", str(existing))
    assert code == 2 and err.count("\n") == 0
    assert "is an existing file: give a folder" in err
    code, err = _run(capsys, "--output_path", str(existing / "below"))
    assert code == 2 and "is a file, not a folder" in err


def test_an_output_path_that_cannot_be_written_is_refused(tmp_path, capsys):
    import os

    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.access(locked, os.W_OK):
        pytest.skip(reason="running as root: every folder is writable")
    code, err = _run(capsys, "--output_path", str(locked / "out"))
    assert code == 2 and "is not writable" in err


def test_a_json_output_path_and_a_new_folder_pass(tmp_path):
    for out in (tmp_path / "new" / "run.json", tmp_path / "new" / "deeper", tmp_path):
        preflight(_argv("--output_path", str(out)))  # no refusal


def test_hooks_that_do_not_load_are_refused(tmp_path, capsys):
    (tmp_path / "mine.py").write_text("HOOK = undefined_name\n")
    code, err = _run(capsys, "--lrp_hooks_path", str(tmp_path))
    assert code == 2 and err.count("\n") == 0
    assert "does not load: NameError" in err and "fix the hook file" in err
    code, err = _run(capsys, "--lrp_hooks_path", str(tmp_path / "missing"))
    assert code == 2 and "is not a folder of hook files" in err


def test_a_missing_or_broken_cases_file_is_refused(tmp_path, capsys):
    code, err = _run(capsys, "--lrp_cases", str(tmp_path / "none.jsonl"))
    assert code == 2 and err == f"lm-eval-lrp: --lrp_cases {tmp_path / 'none.jsonl'}: no such file; give the JSONL " \
        "of hand annotations (task, doc_id, offset)"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task": "gsm8k", "doc_id": 0, "offset": 3}\n{not json\n')
    code, err = _run(capsys, "--lrp_cases", str(bad))
    assert code == 2 and ":2: not valid JSON" in err and "Traceback" not in err


def test_a_reference_model_that_does_not_exist_is_refused(tmp_path, capsys, monkeypatch):
    code, err = _run(capsys, "--lrp_reference_model", "pretrained=/nonexistent")
    assert code == 2 and err.count("\n") == 0 and "pretrained=/nonexistent: no such folder" in err
    (tmp_path / "ref").mkdir()
    with pytest.raises(Refusal, match="gguf does not exist; check gguf_file="):
        check_reference(f"pretrained={tmp_path / 'ref'},gguf_file=m.gguf")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(Refusal, match="not in the local cache"):
        check_reference("pretrained=nobody-here/no-such-model-26")
    check_reference(f"pretrained={tmp_path / 'ref'}")  # an existing folder passes


def test_an_unreachable_judge_is_refused_before_evaluating(capsys):
    url = f"http://127.0.0.1:{_free_port()}/v1/chat/completions"
    code, err = _run(capsys, "--lrp_judge", f"model=x,base_url={url}")
    assert code == 2 and err.count("\n") == 0
    assert f"cannot reach {url}" in err and "start the judge's server or fix base_url=" in err
    # the same with the judge named in the chain: refused, not turned into error records
    code, err = _run(capsys, "--lrp_locate", "judge", "--lrp_judge", f"model=x,base_url={url}")
    assert code == 2 and "cannot reach" in err


def test_a_judge_is_reached_with_one_cheap_request():
    ok = _Server(200, {"choices": [{"message": {"role": "assistant", "content": "1"}}]})
    missing = _Server(404, {"error": "model not found"})
    wrong = _Server(200, {"hello": "world"})
    try:
        check_judges(f"model=a,base_url={ok.url}")
        assert len(ok.seen) == 1 and ok.seen[0]["model"] == "a" and ok.seen[0]["max_tokens"] == 1
        with pytest.raises(Refusal, match="answered HTTP 404"):
            check_judges(f"model=a,base_url={ok.url};model=b,base_url={missing.url}")
        with pytest.raises(Refusal, match="without 'choices'"):
            check_judges(f"model=a,base_url={wrong.url}")
    finally:
        for server in (ok, missing, wrong):
            server.close()


def test_a_given_judge_joins_the_default_chain():
    from locate_helpers import CharTokenizer

    from lm_eval_lrp.config import LRPConfig
    from lm_eval_lrp.harness.locating import Locating
    from lm_eval_lrp.harness.subject import Subject
    from lm_eval_lrp.lmeval.tasks import TaskView
    from lm_eval_lrp.locate.chain import DEFAULT_CHAINS
    from task_hooks import HookRegistry

    def ask(messages):
        return ["1"]

    hook = HookRegistry().for_task("gsm8k", "generate_until")
    given = Subject(model=None, tokenizer=CharTokenizer(), config=LRPConfig(judge="model=a,base_url=u"),
                    encode_pair=None, judge=ask)
    chain = Locating(given, TaskView("gsm8k", "generate_until"), hook).chain
    assert chain.names == ["judge", *DEFAULT_CHAINS["math"]] and chain.locators[0].ask is ask
    plain = Subject(model=None, tokenizer=CharTokenizer(), config=LRPConfig(), encode_pair=None)
    assert Locating(plain, TaskView("gsm8k", "generate_until"), hook).chain.names == list(DEFAULT_CHAINS["math"])


def test_a_missing_extra_names_its_install_command(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "langdetect", None)  # as if not installed: import langdetect fails
    code, err = _run(capsys, tasks="ifeval")
    assert code == 2 and err.count("\n") == 0
    assert "needs langdetect" in err and "pip install 'lm-eval-lrp[ifeval]'" in err
    preflight(_argv(tasks="gsm8k,arc_easy"))  # tasks that do not need it are not refused for it


def test_a_guessed_sub_command_lists_ours(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["show", "runs/main"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "unknown sub-command 'show'" in err
    assert all(f"lm-eval-lrp {c}" in err for c in ("report", "graph", "compare", "explain"))
