"""How the report scales: build the report of a synthetic run of N records, then time headless Chromium on its index
against an empty page (Chromium's own start), interleaved, medians.

    python scripts/report_scale.py [--records 10000] [--repeats 5]

Three figures per page, each the median over ``--repeats`` interleaved rounds:

* wall: ``chromium --headless --screenshot`` from start to the PNG on disk (Chromium's start included);
* cpu: user + system seconds of Chromium's processes for that screenshot (less sensitive to other work on the
  machine than the wall time);
* load: in the page, milliseconds from navigation to the ``load`` event (Performance API, read from a copy of the
  page with a probe script; Chromium's start excluded) and, where Chromium painted by then, to the first paint.

The record list of the index is drawn just after the first paint (``lrp-rows-drawn`` mark); the screenshot shows the
top of the page (tasks, charts), which does not wait for it. The synthetic run is the test helper's
(``tests/test_report_scale.py``).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = ("<script>addEventListener('load',function(){var n=performance.getEntriesByType('navigation')[0],"
         "p=performance.getEntriesByType('paint').filter(function(e){return e.name==='first-contentful-paint'});"
         "document.documentElement.setAttribute('data-perf',JSON.stringify({load:n.loadEventStart,"
         "paint:p.length?p[0].startTime:null}))})</script>")


def probed_copy(html: Path, dest: Path) -> Path:
    """``html`` with the probe as the first script of the document (saved beside it, so relative links still work)."""
    text = html.read_text(encoding="utf-8")
    at = text.index(">", text.index("<html")) + 1
    dest.write_text(text[:at] + PROBE + text[at:], encoding="utf-8")
    return dest


def in_page(html: Path, dump_dom) -> dict:
    dom = dump_dom(html, budget_ms=0)
    raw = dom.split('data-perf="', 1)[1].split('"', 1)[0].replace("&quot;", '"')
    return json.loads(raw)


def timed_screenshot(html: Path, png: Path, screenshot) -> tuple[float, float]:
    r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    screenshot(html, png, budget_ms=0)
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def _med(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=10_000)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "scripts")]
    from screenshot_report import dump_dom, find_chromium, screenshot
    from test_report_scale import synthetic_run

    from lm_eval_lrp.report import build_report

    with tempfile.TemporaryDirectory(prefix="lrp-scale-") as tmp:
        run = synthetic_run(Path(tmp) / "run", n=args.records)
        t0 = time.perf_counter()
        out, builder, _ = build_report(run)
        build_s = time.perf_counter() - t0
        text = out.read_text(encoding="utf-8")
        data = len(text.split('id="rows">', 1)[1].split("</script>", 1)[0].encode()) if 'id="rows">' in text else 0
        pages = sum(p.stat().st_size for p in builder.parts)
        print(f"{args.records} records: index {out.stat().st_size / 2**20:.2f} MiB (record list data {data / 2**20:.2f} MiB), "
              f"{len(builder.parts)} record pages ({pages / 2**20:.1f} MiB in all, largest "
              f"{max(p.stat().st_size for p in builder.parts) / 2**10:.0f} KiB), built in {build_s:.1f} s")
        if find_chromium() is None:
            print("no Chromium: screenshots not timed")
            return 0
        blank = Path(tmp) / "blank.html"
        blank.write_text("<!DOCTYPE html><html><body>.</body></html>")
        shots = {"empty page": blank, "index": out, "a record page": builder.parts[len(builder.parts) // 2]}
        probes = {"empty page": probed_copy(blank, Path(tmp) / "blank_probe.html"),
                  "index": probed_copy(out, out.with_name("index_probe.html"))}
        wall, cpu, load, paint = ({k: [] for k in shots} for _ in range(4))
        for _ in range(args.repeats):
            for name, html in shots.items():
                w, c = timed_screenshot(html, Path(tmp) / "shot.png", screenshot)
                wall[name].append(w)
                cpu[name].append(c)
                if name in probes:
                    try:
                        perf = in_page(probes[name], dump_dom)
                    except (RuntimeError, subprocess.TimeoutExpired, IndexError, ValueError) as err:
                        print(f"in-page timing of {name} failed: {err}")
                        continue
                    load[name].append(perf["load"])
                    paint[name].append(perf["paint"])
        for name in shots:
            line = (f"first screenshot, {name}: wall median {_med(wall[name]):.2f} s "
                    f"({', '.join(f'{x:.2f}' for x in wall[name])}), Chromium cpu median {_med(cpu[name]):.2f} s")
            if load[name]:
                line += f"; in the page: load event {_med(load[name]):.0f} ms"
                if _med(paint[name]) is not None:
                    line += f", first paint {_med(paint[name]):.0f} ms"
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
