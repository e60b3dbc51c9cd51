"""The handover report: one self-contained HTML page per run with an SVG ladder diagram.

``render_report(run_dir, roles, title, verdict=...)`` is the entry point; ``build_ladder`` (from
the checker's facts), ``extract_ladder`` (from captures) and ``render_ladder_svg`` are usable on
their own (pure rendering, no namespaces, no root).
"""

from testbed.report.html import REPORT_NAME, render_report
from testbed.report.ladder import Arrow, CaptureInfo, Ladder, build_ladder, extract_ladder
from testbed.report.roles import DEFAULT_COLUMNS, RoleMap
from testbed.report.svg import Note, render_ladder_svg

__all__ = [
    "DEFAULT_COLUMNS", "REPORT_NAME", "Arrow", "CaptureInfo", "Ladder", "Note", "RoleMap",
    "build_ladder", "extract_ladder", "render_ladder_svg", "render_report",
]  # fmt: skip
