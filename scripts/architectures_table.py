"""Write docs/architectures.md: every causal-LM model type of the installed transformers and whether it is explained.

    python scripts/architectures_table.py            # rewrite the file
    python scripts/architectures_table.py --check    # exit 1 if the file is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lm_eval_lrp.lrp.arch.support import markdown

PATH = Path(__file__).resolve().parents[1] / "docs" / "architectures.md"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/architectures.md is out of date")
    args = parser.parse_args()
    text = markdown()
    if args.check:
        current = PATH.read_text(encoding="utf-8") if PATH.exists() else ""
        if current != text:
            print(f"{PATH} is out of date: run python scripts/architectures_table.py", file=sys.stderr)
            return 1
        return 0
    PATH.write_text(text, encoding="utf-8")
    print(f"wrote {PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
