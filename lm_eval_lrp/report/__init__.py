"""Static, self-contained HTML reports of a run (``lm-eval-lrp report RUN_DIR``). Reports never run a model."""

from .build import ReportBuilder, build_report
from .summary import TaskSummary, accuracy_of, model_args, open_run, summarise
from .graph_view import load_graph, strongest_paths
from .heatmap import normalise

__all__ = ["ReportBuilder", "TaskSummary", "accuracy_of", "build_report", "load_graph", "model_args", "normalise",
           "open_run", "strongest_paths", "summarise"]
