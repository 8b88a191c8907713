"""The exit code of an ``--lrp`` run, decided from its ``lrp`` summaries after lm-eval's results are saved.

A run that evaluated but could not explain its failures must not look like a success. :func:`problems` names, one
line each with what to do, every reason the attribution step failed:

* attribution failed as a whole (an exception in the attribution step, an unsupported architecture, a failed
  self-check): the summary's ``error``;
* a task stopped on a systematic bug (the same exception at the same place on its first documents): ``stopped``;
* half or more of a task's attempted failures ended as error records;
* records were due but none could be written (``unwritten``).

:func:`exit_code` turns them into :data:`ATTRIBUTION_FAILED` (documented in docs/exit-codes.md) unless the user
allowed errors (``--lrp_allow_errors``). Plain values in, plain values out: no lm-eval, no model.
"""

from __future__ import annotations

from collections import Counter

OK = 0
#: lm-eval stopped before it produced results (as plain ``lm_eval`` fails)
EVALUATION_FAILED = 1
#: the run was refused before evaluating (bad options or paths)
REFUSED = 2
#: lm-eval's results are saved, but the attribution failed (see :func:`problems`)
ATTRIBUTION_FAILED = 3
#: a share of a task's attempted failures ending as errors at or above this fails the run
ERROR_SHARE = 0.5


def problems(summary: dict) -> list[str]:
    """Why the attribution step of one evaluation failed, one line each (empty: it did not)."""
    if not summary:  # a non-zero rank, or a model without attribution
        return []
    out = []
    if summary.get("error"):
        out.append(f"attribution failed: {summary['error']} (lm-eval's results are saved; nothing was attributed)")
    if summary.get("unwritten"):
        out.append(f"no attribution record could be written: {summary['unwritten']}")
    for name, t in (summary.get("tasks") or {}).items():
        if t.get("stopped"):
            out.append(f"{name}: {t['stopped']}")
            continue
        errors, attempted = sum((t.get("errors") or {}).values()), t.get("explained") or 0
        if attempted and errors / attempted >= ERROR_SHARE:
            (reason, n), = Counter(t["errors"]).most_common(1)
            out.append(f"{name}: {errors} of {attempted} attempted failures ended as errors (most often, {n}×: "
                       f"{reason}); the records say why; fix the cause and rerun the same command to redo them")
    return out


def exit_code(summaries: list[tuple[dict, bool]]) -> tuple[int, list[str]]:
    """The exit code and the last lines to print for the ``(summary, allow_errors)`` of each evaluation."""
    lines, allowed = [], True
    for summary, allow in summaries:
        found = problems(summary)
        lines += found
        allowed = allowed and (allow or not found)
    if not lines:
        return OK, []
    if allowed:
        return OK, [f"lm-eval-lrp: {line}" for line in lines] + ["lm-eval-lrp: exit status 0 because of --lrp_allow_errors"]
    return ATTRIBUTION_FAILED, [f"lm-eval-lrp: {line}" for line in lines] + [
        f"lm-eval-lrp: lm-eval's results are saved, but the attribution failed (exit status {ATTRIBUTION_FAILED}); "
        "--lrp_allow_errors keeps exit status 0"]
