"""Checks before evaluating: everything an ``--lrp`` run needs that can be checked before the model is loaded.

Each check returns nothing or raises :class:`Refusal`, one line that names the fix. The command turns a refusal into
exit code 2 (see docs/preflight.md). Checked: the output path can be written, ``--lrp_hooks_path`` loads,
``--lrp_cases`` exists and parses, each ``--lrp_judge`` answers one cheap request, ``--lrp_reference_model`` names
weights that exist, and the extras the tasks or options need are installed.
"""

from __future__ import annotations

import json
import os
import re
import sys
import urllib.error
import urllib.request
from importlib.util import find_spec
from pathlib import Path

EXIT_CODE = 2

# extra -> (the modules it installs, what needs it)
EXTRAS = {
    "ifeval": ("langdetect", "immutabledict", "nltk"),
    "judge": ("aiohttp", "tenacity", "requests"),
    "gguf": ("gguf",),
}
# task-name prefixes whose scoring imports an extra
TASK_EXTRAS = {"ifeval": "ifeval", "ifbench": "ifeval"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


class Refusal(ValueError):
    """Something the run needs is missing or broken; the message is one line naming the fix."""


def installed(module: str) -> bool:
    """Whether ``module`` can be imported (an entry ``None`` in ``sys.modules`` blocks it, as ``import`` does)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    return find_spec(module) is not None


def check_extras(tasks: list[str], *, gguf: bool = False, judge: bool = False) -> None:
    needed = {TASK_EXTRAS[p] for t in tasks for p in TASK_EXTRAS if t.startswith(p)}
    needed |= {name for name, wanted in (("gguf", gguf), ("judge", judge)) if wanted}
    for extra in sorted(needed):
        missing = [m for m in EXTRAS[extra] if not installed(m)]
        if missing:
            why = {"gguf": "the model is a GGUF file", "judge": "--lrp_judge"}.get(extra, f"the {extra} task's scoring")
            raise Refusal(f"{why} needs {', '.join(missing)}: pip install 'lm-eval-lrp[{extra}]'")


def check_output_path(path: str | os.PathLike | None) -> None:
    """lm-eval writes into a folder (or beside a ``*.json`` file name): refuse an existing file or a place it cannot
    write, instead of evaluating everything and saving nothing."""
    if not path:
        return
    p = Path(path).expanduser()
    if p.suffix == ".json":
        p = p.parent
    elif p.exists() and not p.is_dir():
        raise Refusal(f"--output_path {path} is an existing file: give a folder (lm-eval writes results into it)")
    probe = p
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise Refusal(f"--output_path {path}: {probe} is a file, not a folder: give a path under a folder you can write")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise Refusal(f"--output_path {path}: {probe} is not writable: give a folder you can write to")


def check_hooks(path: str | None) -> None:
    if not path:
        return
    from task_hooks import load_hooks_from

    try:
        load_hooks_from(path)
    except FileNotFoundError as err:
        raise Refusal(str(err)) from None
    except (SyntaxError, ImportError, NameError, AttributeError, TypeError, ValueError) as err:
        where = f" ({err.filename}:{err.lineno})" if isinstance(err, SyntaxError) else ""
        raise Refusal(f"--lrp_hooks_path {path} does not load: {type(err).__name__}: {err}{where}; fix the hook file") from None


def check_cases(path: str | None) -> None:
    if not path:
        return
    from .locate.cases import load_cases

    try:
        load_cases(path)
    except FileNotFoundError:
        raise Refusal(f"--lrp_cases {path}: no such file; give the JSONL of hand annotations (task, doc_id, offset)") from None
    except ValueError as err:
        raise Refusal(f"--lrp_cases {err}; fix that line") from None


def check_reference(args: str | None) -> None:
    """The reference model's weights exist (see :func:`check_weights`)."""
    if not args:
        return
    from .model_args import LOAD_KEYS, load_spec, parse_model_args
    from .reference_model import split_reference_args

    check_weights("--lrp_reference_model", load_spec(split_reference_args(parse_model_args(str(args).replace("|", ",")),
                                                                          LOAD_KEYS)[0]))


def check_weights(option: str, spec: dict) -> None:
    """A model's weights exist: a local folder (with its ``gguf_file``) or a well-formed hub id that is reachable
    (cached when ``HF_HUB_OFFLINE`` is set)."""
    pretrained = str(spec["pretrained"])
    local = Path(pretrained).expanduser()
    if local.is_dir():
        gguf = spec.get("gguf_file")
        if gguf and not (local / gguf).is_file():
            raise Refusal(f"{option}: {local / gguf} does not exist; check gguf_file=")
        return
    if local.exists():
        raise Refusal(f"{option} pretrained={pretrained} is a file: give the model's folder"
                      " (and gguf_file=NAME for a GGUF file in it)")
    if pretrained.startswith(("/", ".", "~")) or not _HUB_ID.match(pretrained):
        raise Refusal(f"{option} pretrained={pretrained}: no such folder; give the model's "
                      "folder or a hub id (org/name)")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        from huggingface_hub import try_to_load_from_cache

        if try_to_load_from_cache(pretrained, "config.json") is None and not spec.get("gguf_file"):
            raise Refusal(f"{option} pretrained={pretrained}: not in the local cache and HF_HUB_OFFLINE "
                          "is set; download it first or give a local folder")


def check_judges(spec: str | None, timeout: float = 10.0) -> None:
    """One cheap request to each judge (a one-token chat completion): a judge that cannot answer is refused now."""
    if not spec:
        return
    from .locate.judge import parse_judges

    for judge in parse_judges(spec):
        if "pretrained" in judge:  # a local transformers judge: its weights must be there
            check_weights("--lrp_judge", judge)
            continue
        url, model = judge["base_url"], judge["model"]
        body = {"model": model, "messages": [{"role": "user", "content": "Reply with 1."}], "max_tokens": 1,
                "temperature": 0}
        request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=float(judge.get("timeout", timeout))) as response:
                reply = json.loads(response.read().decode("utf-8", "replace") or "null")
        except urllib.error.HTTPError as err:
            raise Refusal(f"--lrp_judge {model} at {url} answered HTTP {err.code} {err.reason}: check model= and "
                          "base_url= (an OpenAI-compatible /v1/chat/completions endpoint)") from None
        except (urllib.error.URLError, OSError) as err:
            why = getattr(err, "reason", err)
            raise Refusal(f"--lrp_judge {model}: cannot reach {url} ({why}); start the judge's server or fix "
                          "base_url=") from None
        except json.JSONDecodeError:
            raise Refusal(f"--lrp_judge {model} at {url} did not answer JSON: base_url= must be the chat "
                          "completions endpoint (…/v1/chat/completions)") from None
        if not (isinstance(reply, dict) and isinstance(reply.get("choices"), list)):
            raise Refusal(f"--lrp_judge {model} at {url} answered without 'choices': base_url= must be an "
                          "OpenAI-compatible chat completions endpoint (…/v1/chat/completions)")


def check_run(cfg, tasks: list[str], output_path: str | None, model_args: dict) -> None:
    """Every check, cheapest first; raises the first :class:`Refusal`."""
    check_output_path(output_path)
    check_extras(tasks, gguf=bool(model_args.get("gguf_file")), judge=bool(cfg.judge))
    check_hooks(cfg.hooks_path)
    check_cases(cfg.cases)
    check_reference(cfg.reference_model)
    check_judges(cfg.judge)
