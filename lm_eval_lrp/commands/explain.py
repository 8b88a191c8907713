"""``lm-eval-lrp explain RUN_DIR --cases FILE``: re-explain stored failures at hand-given positions (no re-evaluation)."""

from __future__ import annotations

import argparse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lm-eval-lrp explain",
        description="Re-explain a run's generate_until failures at the positions a cases file gives, from the stored "
        "prompt and output token ids (nothing is re-evaluated), on the run's model. Each task's records are written "
        "to a new attributions file beside the old one (reports read the newest): corrected records have locator "
        "'cases' and keep the automatic location under 'automatic'. A cases file of a run's failures, to edit: "
        "lm-eval-lrp report RUN_DIR (writes <report>_cases.jsonl).",
    )
    p.add_argument("run_dir", help="the run's --output_path (or its model sub-folder)")
    p.add_argument("--cases", required=True, metavar="FILE",
                   help='JSONL, one failure per line: {"task": ..., "doc_id": N, "offset": CHAR (or "index": TOKEN), '
                   '"target": optional text, "contrast": optional text of the correct token}')
    p.add_argument("--model_args", default=None,
                   help="the model (pretrained=...,gguf_file=...,revision=...) instead of the run's recorded model_args")
    p.add_argument("--device", default=None, help="device (default: cuda if available, else cpu)")
    p.add_argument("--dtype", default=None, help="dtype (default: the run's dtype= model argument, else float32)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from rich.console import Console
    from rich.markup import escape

    from ..console import fitting_table
    from ..correction import CorrectionError, correct
    from ..model_args import ModelArgsError

    console = Console()
    device = args.device
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        out = correct(args.run_dir, args.cases, args.model_args, device=device, dtype=args.dtype)
    except (CorrectionError, ModelArgsError, FileNotFoundError, ValueError) as err:
        console.print(f"[bold red]lm-eval-lrp explain:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
        return 2
    rows = []
    for c in out.cases:
        a = c.automatic
        auto = f"{a.get('locator') or 'none'} @ {a.get('output_offset') if a.get('output_offset') is not None else '–'}"
        rows.append([c.task, str(c.doc_id), auto, "–" if a.get("delta") is None else f"{a['delta']:+.3f}",
                     c.status, "–" if c.delta is None else f"{c.delta:+.3f}"])
    cols = [("task", "task"), ("doc", "doc"), ("automatic location (char)", "auto"), ("automatic Δℓ", "Δℓ auto"),
            ("status", "status"), ("Δℓ at the case", "Δℓ case")]
    table, legend = fitting_table("lm-eval-lrp explain --cases", cols, rows, console.width)
    console.print(table)
    if legend:
        console.print(escape(legend), highlight=False, soft_wrap=True)
    for c in out.cases:
        if c.status != "attributed" and c.reason:
            console.print(f"  {escape(c.task)} doc {c.doc_id}: {escape(c.reason)}", highlight=False, soft_wrap=True)
    for path in out.files:
        console.print(f"[bold]records:[/] {escape(str(path))}", highlight=False, soft_wrap=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
