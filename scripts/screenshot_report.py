"""Render an lm-eval-lrp HTML report to PNG with headless Chromium (to look at it, and in a test).

    python scripts/screenshot_report.py REPORT.html [--out shot.png] [--fragment r0] [--size 1400,1000]
    python scripts/screenshot_report.py --build RUN_DIR --out shot.png        # build the report first

Chromium comes from Debian: ``apt-get install -y chromium``. Run as root it needs ``--no-sandbox``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    env = os.environ.get("CHROMIUM")
    if env and shutil.which(env):
        return shutil.which(env)
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _command(chromium: str, profile: str, budget_ms: int) -> list[str]:
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
           f"--user-data-dir={profile}"]
    return cmd + ([f"--virtual-time-budget={budget_ms}"] if budget_ms else [])


def _url(html: str | Path, fragment: str | None, query: str | None = None) -> str:
    return Path(html).resolve().as_uri() + (f"?{query}" if query else "") + (f"#{fragment}" if fragment else "")


def screenshot(html: str | Path, png: str | Path, fragment: str | None = None, size: tuple[int, int] = (1400, 1000),
               chromium: str | None = None, timeout: float = 90.0, budget_ms: int = 3000) -> Path:
    """Write a PNG of ``html`` (optionally at ``#fragment``); raises RuntimeError when Chromium fails.

    ``budget_ms``: virtual time given to the page's scripts before the shot (0: shoot at load).
    """
    chromium = chromium or find_chromium()
    if chromium is None:
        raise RuntimeError("no Chromium found (apt-get install -y chromium)")
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    if png.exists():
        png.unlink()
    with tempfile.TemporaryDirectory(prefix="lrp-chromium-") as profile:
        cmd = _command(chromium, profile, budget_ms) + [f"--screenshot={png}", f"--window-size={size[0]},{size[1]}",
                                                         _url(html, fragment)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if not png.exists() or png.stat().st_size == 0:
        raise RuntimeError(f"Chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return png


def dump_dom(html: str | Path, fragment: str | None = None, chromium: str | None = None, timeout: float = 90.0,
             budget_ms: int = 3000, query: str | None = None) -> str:
    """The page's DOM after its scripts ran (``--dump-dom``): what a reader's browser shows, as HTML text."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise RuntimeError("no Chromium found (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="lrp-chromium-") as profile:
        proc = subprocess.run(_command(chromium, profile, budget_ms) + ["--dump-dom", _url(html, fragment, query)],
                              capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not proc.stdout:
        raise RuntimeError(f"Chromium dumped no DOM (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("html", nargs="?", help="the report (HTML file)")
    p.add_argument("--build", metavar="RUN_DIR", help="build the report of this run first")
    p.add_argument("--out", default="report.png")
    p.add_argument("--fragment", help="a record view, e.g. r0 (default: the index)")
    p.add_argument("--size", default="1400,1000", help="window width,height")
    args = p.parse_args(argv)
    html = args.html
    if args.build:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from lm_eval_lrp.report import build_report

        html, _, _ = build_report(args.build, html)
    if not html:
        p.error("give a report file or --build RUN_DIR")
    w, h = (int(x) for x in args.size.split(","))
    try:
        out = screenshot(html, args.out, args.fragment, (w, h))
    except (RuntimeError, subprocess.TimeoutExpired) as err:
        print(f"screenshot_report: {err}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
