"""``benchmarks/locate.py --processbench FILE``: text-only locators scored on ProcessBench's format (shipped sample)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "data" / "processbench_sample.jsonl"


def _module(name, file):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pb = _module("bench_processbench", "processbench.py")


def test_the_shipped_sample_is_processbench_format():
    rows = pb.load(SAMPLE)
    assert len(rows) >= 30 and len({r["problem"] for r in rows}) >= 15
    assert sum(r["label"] == -1 for r in rows) >= 10 and sum(r["label"] >= 0 for r in rows) >= 10
    assert {r["label"] for r in rows if r["label"] >= 0} >= {0, 1, 2}  # errors at several depths


def test_f1_is_the_harmonic_mean_of_both_accuracies():
    got = pb.f1_score([1, -1, 0, -1, 2], [1, -1, 2, 0, 2])
    assert got["acc_erroneous"] == pytest.approx(2 / 3) and got["acc_correct"] == 0.5
    assert got["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert pb.f1_score([0, -1], [1, 0])["f1"] == 0.0


def test_scoring_runs_on_the_sample(tmp_path, capsys):
    out = tmp_path / "pb.json"
    locate = _module("bench_locate_pb", "locate.py")
    assert locate.main(["--processbench", str(SAMPLE), "--locators", "trajectory,arithmetic", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ProcessBench-format scoring of" in printed and "arithmetic" in printed
    report = json.loads(out.read_text())["report"]
    rows = pb.load(SAMPLE)
    labels = [r["label"] for r in rows]
    for name in ("trajectory", "arithmetic"):
        r = report[name]
        assert len(r["predictions"]) == len(rows) and all(-1 <= p < len(row["steps"]) for p, row in zip(r["predictions"], rows))
        assert r == {**r, **pb.f1_score(labels, r["predictions"])}
    # the arithmetic verifier flags exactly the wrong equations: the slip "4 x 12 = 46" is step 1, correct solutions pass
    arith = report["arithmetic"]["predictions"]
    slip = next(i for i, row in enumerate(rows) if "4 x 12 = 46" in row["steps"][1])
    assert arith[slip] == 1 and report["arithmetic"]["acc_correct"] == 1.0


def test_a_malformed_line_is_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"problem": "p", "steps": ["a"], "label": -1}) + "\n"
                    + json.dumps({"problem": "p", "steps": ["a", "b"], "label": 2}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: 'label' must be -1 or the index of a step \(0..1\)"):
        pb.load(path)


@pytest.mark.slow
def test_prm_and_local_judge_scored_on_the_sample(tmp_path_factory, tmp_path):
    """A tiny random PRM and a tiny local judge through the same entry point (the figures are chance: the shape is
    what is tested)."""
    import tiny_harness as th
    from test_locate_prm import build_prm

    root = tmp_path_factory.mktemp("pbprm")
    out = tmp_path / "pb.json"
    assert pb.main(["--processbench", str(SAMPLE), "--locators", "", "--device", "cpu", "--output", str(out),
                    "--prm", f"pretrained={build_prm(root)},threshold=0.5,batch_size=16",
                    "--judge", f"pretrained={th.build(root)},max_gen_toks=3"]) == 0
    report = json.loads(out.read_text())["report"]
    assert set(report) == {"judge", "prm"}
    for r in report.values():
        assert r["erroneous"] + r["correct"] == len(pb.load(SAMPLE)) and r["f1"] is not None
