"""The seam to lm-eval: the only code of lm-eval-lrp that imports lm-eval or touches its objects.

* :func:`install` — the one explicit place where lm-eval-lrp enters lm-eval: registers the ``hf-lrp`` model and wraps
  ``lm_eval.evaluator.evaluate`` (transparent for every other model). The ``lm-eval-lrp`` command calls it, and so
  does ``lm_eval_lrp.install()`` from Python. Importing ``lm_eval_lrp`` (or its engine, graphs, reports) does not
  import lm-eval.
* :mod:`.model` — ``hf-lrp`` (:class:`HFLRP`, a subclass of lm-eval's ``HFLM``) and the plain ``Subject`` it hands
  the harness loop; :mod:`.tasks` — plain task views and the multiple-choice verdict; :mod:`.naming` — lm-eval's
  output folder; :mod:`.route` — the evaluate wrapper and the checks of ``--lrp_metric``/``--lrp_filter``.
"""

from __future__ import annotations

_INSTALLED = False


def install() -> None:
    """Register ``hf-lrp`` with lm-eval and route its evaluations through the attribution loop (idempotent)."""
    global _INSTALLED
    if _INSTALLED:
        return
    import lm_eval.evaluator as evaluator
    from lm_eval.api.registry import get_model, register_model

    from .model import HFLRP
    from .route import wrap

    try:
        registered = get_model("hf-lrp")
    except (KeyError, ValueError):
        registered = None
    if registered is None:
        register_model("hf-lrp")(HFLRP)
    if not getattr(evaluator.evaluate, "_lm_eval_lrp", False):
        evaluator.evaluate = wrap(evaluator.evaluate)
    _INSTALLED = True


def run_cli(argv: list[str]) -> list[tuple[dict, bool]]:
    """lm-eval's own command line (``lm_eval ...``) with ``argv``, after :func:`install`; the ``(lrp summary,
    allow_errors)`` of each evaluation it attributed, once lm-eval has saved its results."""
    import sys

    install()
    from lm_eval.__main__ import cli_evaluate

    from .route import OUTCOMES

    OUTCOMES.clear()
    sys.argv = ["lm-eval-lrp", *argv]
    cli_evaluate()
    return list(OUTCOMES)


__all__ = ["install", "run_cli"]
