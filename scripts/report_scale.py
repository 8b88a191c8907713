"""How the report scales: build the report of a synthetic run of N records, then time headless Chromium's first
screenshot of its index against an empty page (Chromium's own start), interleaved, medians.

    python scripts/report_scale.py [--records 10000] [--repeats 3]

The synthetic run is the test helper's (``tests/test_report_scale.py``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=10_000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "scripts")]
    from screenshot_report import find_chromium, screenshot
    from test_report_scale import synthetic_run

    from lm_eval_lrp.report import build_report

    with tempfile.TemporaryDirectory(prefix="lrp-scale-") as tmp:
        run = synthetic_run(Path(tmp) / "run", n=args.records)
        t0 = time.perf_counter()
        out, builder, _ = build_report(run)
        build_s = time.perf_counter() - t0
        pages = sum(p.stat().st_size for p in builder.parts)
        print(f"{args.records} records: index {out.stat().st_size / 2**20:.2f} MiB, {len(builder.parts)} record pages "
              f"({pages / 2**20:.1f} MiB in all, largest {max(p.stat().st_size for p in builder.parts) / 2**10:.0f} KiB), "
              f"built in {build_s:.1f} s")
        if find_chromium() is None:
            print("no Chromium: screenshots not timed")
            return 0
        blank = Path(tmp) / "blank.html"
        blank.write_text("<!DOCTYPE html><html><body>.</body></html>")
        times = {"empty page": [], "index": [], "a record page": []}
        for _ in range(args.repeats):
            for name, (html, frag) in {"empty page": (blank, None), "index": (out, None),
                                       "a record page": (builder.parts[len(builder.parts) // 2], None)}.items():
                t = time.perf_counter()
                screenshot(html, Path(tmp) / "shot.png", fragment=frag, budget_ms=0)
                times[name].append(time.perf_counter() - t)
        for name, ts in times.items():
            print(f"first screenshot, {name}: median {statistics.median(ts):.2f} s ({', '.join(f'{x:.2f}' for x in ts)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
