"""Locators by name, and the chain that tries them in order (the first that finds a token wins).

``--lrp_locate gold,verifier,rollout`` becomes ``Chain.from_names("gold,verifier,rollout")``. Names joined by ``+``
form one link whose locators all run, and the earliest token any of them finds wins (``trajectory+reference``: each
reads the whole output for its own kind of error, and the error to explain is the first one). Each locator is a
small object with a ``name`` and ``locate(gen, ctx) -> Location | None``; it raises :class:`NotFound` (or returns
None) when it finds nothing, with the reason, and :class:`LocateError` when the document cannot be judged (the
chain stops: an error for that document, the run goes on).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Protocol, runtime_checkable

from .confidence import EVIDENCE
from .context import Context
from .types import Generation, LocateError, Location, NotFound


@runtime_checkable
class Locator(Protocol):
    """A locator: a ``name``, what it ``needs`` from the run (a subset of :data:`NEEDS`; the config checks them before
    the evaluation), what its finding rests on (``evidence``, a subset of :data:`EVIDENCE`: two locators that agree
    confirm a location only on independent evidence) and ``locate``, which returns a :class:`Location` or raises
    :class:`NotFound` with the reason."""

    name: str

    def locate(self, gen: Generation, ctx: Context) -> Location | None: ...


#: what a locator may declare in ``needs`` (a class attribute; none: it reads the generation and the context only), and
#: the constructor arguments by which the run gives each (:func:`options_from_needs`): ``reference`` a second model
#: (--lrp_reference_model; ``model=``, and ``gap=`` / ``gold_in_context=`` when given), ``judge`` LLM judges
#: (--lrp_judge; ``ask=``), ``prm`` a process reward model (--lrp_prm; ``prm=``, ``threshold=``), ``cases`` a file of
#: hand annotations (--lrp_cases; ``path=``), ``budget`` the rollout budget (--lrp_rollouts / --lrp_rollout_tokens;
#: ``budget=``), ``hook`` the task's hook (``hook=``: its ``locate_divergence``), ``model`` the evaluated model itself
#: (no argument: through the context)
NEEDS = ("model", "reference", "judge", "prm", "cases", "budget", "hook")

#: an attempt's status in the record's ``locate.attempts``: ``located`` (a token and a contrast), ``no_contrast`` (a
#: token but no contrast among the model's top-k: the next locator may find both; the first such token is kept when
#: nothing better is found), ``not_found`` (the locator raised NotFound, with its reason), ``timeout`` (it raised
#: TimedOut, a NotFound: e.g. the task's tests did not finish; the chain goes on) and ``error`` (LocateError: the
#: document cannot be judged, the chain stops)
STATUSES = ("located", "no_contrast", "not_found", "timeout", "error")


_REGISTRY: dict[str, Callable[..., Locator]] = {}


def register(name: str, factory: Callable[..., Locator]) -> None:
    """Make ``factory`` (a class or a function returning a locator) available as ``name``; its ``needs`` attribute
    (a tuple of :data:`NEEDS`) says what the run must give it."""
    unknown = [n for n in getattr(factory, "needs", ()) if n not in NEEDS]
    if unknown:
        raise ValueError(f"locator {name!r} needs {unknown[0]!r}, which is none of {', '.join(NEEDS)}")
    unknown = [e for e in getattr(factory, "evidence", ()) if e not in EVIDENCE]
    if unknown:
        raise ValueError(f"locator {name!r} declares evidence {unknown[0]!r}, which is none of {', '.join(EVIDENCE)}")
    _REGISTRY[name] = factory


def unregister(name: str) -> None:
    """Forget the locator ``name`` that :func:`register` made available (a plugin's or a test's own)."""
    _REGISTRY.pop(name, None)


def needs_of(name: str) -> tuple[str, ...]:
    """What the locator ``name`` declares it needs (see :data:`NEEDS`)."""
    _builtins()
    if name not in _REGISTRY:
        raise ValueError(f"unknown locator {name!r}; available: {', '.join(names())}")
    return tuple(getattr(_REGISTRY[name], "needs", ()))


def evidence_of(locator: "Locator | str") -> tuple[str, ...]:
    """What ``locator`` (a locator, or a registered locator's name: its class's declaration) declares its finding
    rests on (see :data:`EVIDENCE`; empty: nothing declared)."""
    if isinstance(locator, str):
        _builtins()
        if locator not in _REGISTRY:
            raise ValueError(f"unknown locator {locator!r}; available: {', '.join(names())}")
        locator = _REGISTRY[locator]
    return tuple(getattr(locator, "evidence", ()))


_BUILTINS_LOADED: list[bool] = []  # the built-in locators are registered once, on first use (a plugin may come first)


def _builtins() -> None:
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED.append(True)
    from .cases import CasesLocator
    from .coverage import CoverageLocator
    from .crash import CrashLocator
    from .gold import GoldLocator
    from .reference import HindsightLocator, ReferenceLocator
    from .rollout import RolloutLocator
    from .judge import JudgeLocator
    from .prm import PRMLocator
    from .trajectory import TrajectoryLocator
    from .verifier import ArithmeticVerifier, CodeVerifier, InstructionVerifier, Verifier

    for cls in (GoldLocator, Verifier, ArithmeticVerifier, InstructionVerifier, CodeVerifier, RolloutLocator,
                ReferenceLocator, CasesLocator, TrajectoryLocator, JudgeLocator, CrashLocator, CoverageLocator,
                HindsightLocator, PRMLocator):
        _REGISTRY.setdefault(cls.name, cls)


def options_from_needs(given: dict[str, dict]) -> dict[str, dict]:
    """Each registered locator's constructor arguments, from what it declares it needs: ``given[need]`` are the
    arguments by which the run gives that need (``{"budget": {"budget": Budget()}, "cases": {"path": "a.jsonl"}}``);
    a need the run does not give adds nothing (the config refuses a named locator whose need is missing)."""
    _builtins()
    options = {}
    for name, factory in _REGISTRY.items():
        kwargs = {k: v for need in getattr(factory, "needs", ()) for k, v in given.get(need, {}).items()}
        if kwargs:
            options[name] = kwargs
    return options


def names() -> list[str]:
    _builtins()
    return sorted(_REGISTRY)


def make(name: str, **options) -> Locator:
    """A locator by name; ``options`` go to its constructor (e.g. ``path=`` for ``cases``, ``model=`` for ``reference``)."""
    _builtins()
    if name not in _REGISTRY:
        raise ValueError(f"unknown locator {name!r}; available: {', '.join(names())}")
    return _REGISTRY[name](**options)


def split_names(spec: str | list[str]) -> list[list[str]]:
    """``"a+b,c"`` → ``[["a", "b"], ["c"]]`` (the chain's links; a link of several names is an :class:`Earliest`)."""
    links = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    return [[n.strip() for n in link.split("+") if n.strip()] for link in links]


class Earliest:
    """Several locators as one link of a chain: each runs, and the earliest output token found wins (a tie: the one
    named first). A token with a contrast wins over an earlier one without. The rollouts any of them ran stay in the
    record (each names its position: the cost is reported whole). Nothing found by any: NotFound with each one's
    reason; an error of one is the document's error (as in a chain)."""

    def __init__(self, locators: list[Locator]):
        if len(locators) < 2:
            raise ValueError("an earliest-of link joins at least two locators")
        self.locators = list(locators)
        self.name = "+".join(loc.name for loc in self.locators)

    def locate(self, gen: Generation, ctx: Context) -> Location:
        found, why, rolled, evidence = [], [], [], {}
        for loc in self.locators:
            start = time.perf_counter()
            try:
                got = loc.locate(gen, ctx)
            except NotFound as err:
                why.append(f"{loc.name}: {'timeout: ' if err.status == 'timeout' else ''}{err}")
                rolled += getattr(err, "rollouts", [])
                continue
            if got is None:
                why.append(f"{loc.name}: found nothing")
                continue
            got.seconds = got.seconds or time.perf_counter() - start
            evidence[got.locator] = list(got.evidence.get(got.locator, evidence_of(loc)))
            found.append(got)
        if not found:
            raise NotFound("; ".join(why), rollouts=rolled)
        pool = [f for f in found if f.contrast is not None] or found
        best = min(pool, key=lambda f: (f.continuation is not None, f.index))  # output tokens before gold ones
        others = [f for f in found if f is not best]
        agree = [f for f in others if same_step(gen, best, f)]
        best.agreeing = [f.locator for f in agree]
        best.evidence = {n: evidence[n] for n in [best.locator, *best.agreeing]}
        best.final_answer = best.final_answer or any(f.final_answer for f in agree)  # one step: the answer's
        if others:
            best.reason += " (earliest of: " + ", ".join(
                f"{f.locator} at output token {f.index}" + ("" if f.contrast is not None else " without contrast")
                for f in [best, *others]) + ")"
        best.seconds = sum(f.seconds for f in found)
        best.rollouts = list(best.rollouts) + [r for f in others for r in f.rollouts] + rolled  # each says its position
        return best


def same_step(gen: Generation, a: Location, b: Location) -> bool:
    """Whether two locations name the same step: of the output (a line, or a sentence within one), or the same
    token of the gold continuation."""
    from .confidence import step_of

    if (a.continuation is None) != (b.continuation is None):
        return False
    if a.continuation is not None:
        return a.index == b.index
    if a.index == b.index:
        return True
    sa, sb = step_of(gen.output, a.output_offset), step_of(gen.output, b.output_offset)
    return sa is not None and sa == sb


#: the chain per kind of task when the user names none. Chosen on the hand-annotated dev set
#: (tests/data/locate_devset.jsonl, benchmarks/locate.py): the verifiers place the most explained tokens inside the
#: annotated error and need no model to find it (the model's top-k picks the contrast, and a few rollouts check it),
#: so they go first (math: ``trajectory`` with ``hindsight`` in one earliest-of link: hindsight fires rarely and where
#: it fires before trajectory's step it was right); rollout (bounded by --lrp_rollouts) tries the rest; gold is the
#: last resort where a task has a gold solution.
DEFAULT_CHAINS = {
    "math": ("trajectory+hindsight", "arithmetic", "rollout", "gold"),
    "code": ("code", "crash", "coverage", "rollout", "gold"),
    "instructions": ("instructions", "rollout"),
    None: ("verifier", "rollout", "gold"),
}

#: the default chains when a reference model is given (``--lrp_reference_model``): on the dev set, the earliest of
#: trajectory's and the reference's finding reaches errors written as prose that trajectory alone explains late
WITH_REFERENCE = {
    "math": ("trajectory+hindsight+reference", "arithmetic", "rollout", "gold"),
    "code": ("code", "crash+reference", "coverage", "rollout", "gold"),
    "instructions": ("instructions", "reference", "rollout"),
    None: ("verifier", "reference", "rollout", "gold"),
}


@dataclass
class Attempt:
    locator: str
    status: str  # one of STATUSES
    reason: str = ""
    seconds: float = 0.0
    rollouts: list = field(default_factory=list)  # what a locator that found nothing tried (rollout)


@dataclass
class ChainResult:
    location: Location | None
    attempts: list[Attempt] = field(default_factory=list)
    error: str | None = None

    @property
    def reason(self) -> str:
        """Why nothing was located (each locator's reason), or the error."""
        if self.error:
            return self.error
        return "; ".join(f"{a.locator}: {a.reason}" for a in self.attempts if a.status != "located")


class Chain:
    def __init__(self, locators: list[Locator]):
        if not locators:
            raise ValueError("a locate chain needs at least one locator")
        self.locators = list(locators)

    @classmethod
    def from_names(cls, spec: str | list[str], options: dict[str, dict] | None = None) -> "Chain":
        """``"gold,verifier,rollout"`` (or a list; ``a+b`` joins locators into one earliest-of link);
        ``options[name]`` are that locator's constructor arguments."""
        options = options or {}
        links = []
        for link in split_names(spec):
            made = [make(n, **options.get(n, {})) for n in link]
            links.append(made[0] if len(made) == 1 else Earliest(made))
        return cls(links)

    @classmethod
    def default(cls, kind: str | None, options: dict[str, dict] | None = None) -> "Chain":
        """The kind's default chain; with a reference model among ``options``, the chain that uses it; with a process
        reward model (math), ``prm`` first."""
        chains = WITH_REFERENCE if "reference" in (options or {}) else DEFAULT_CHAINS
        links = list(chains.get(kind, chains[None]))
        if kind == "math" and "prm" in (options or {}):  # a process reward model the user gave goes first
            links = ["prm", *links]
        return cls.from_names(links, options)

    @property
    def names(self) -> list[str]:
        return [loc.name for loc in self.locators]

    def locate(self, gen: Generation, ctx: Context) -> ChainResult:
        result, fallback = ChainResult(None), None
        for loc in self.locators:
            start = time.perf_counter()
            try:
                found = loc.locate(gen, ctx)
            except NotFound as why:
                result.attempts.append(Attempt(loc.name, why.status, str(why), time.perf_counter() - start,
                                               getattr(why, "rollouts", [])))
                continue
            except LocateError as err:
                result.attempts.append(Attempt(loc.name, "error", str(err), time.perf_counter() - start))
                result.error = f"{loc.name}: {err}"
                return result
            seconds = time.perf_counter() - start
            if found is None:
                result.attempts.append(Attempt(loc.name, "not_found", "found nothing", seconds))
                continue
            found.seconds = found.seconds or seconds
            if not found.evidence:  # an earliest-of link has set it for every locator that named the step
                found.evidence = {found.locator: list(evidence_of(loc))}
            if found.contrast is None:  # a position without a contrast: the next locator may find both
                result.attempts.append(Attempt(loc.name, "no_contrast", found.reason, seconds))
                fallback = fallback or found
                continue
            result.attempts.append(Attempt(loc.name, "located", found.reason, seconds))
            result.location = found
            return result
        result.location = fallback  # still say where it is, when nothing better was found
        return result
