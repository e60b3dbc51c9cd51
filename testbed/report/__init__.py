"""The handover report: one self-contained HTML page per run with an SVG ladder diagram.

``render_report(run_dir, roles, title)`` is the entry point; ``extract_ladder`` and
``render_ladder_svg`` are usable on their own (pure rendering, no namespaces, no root).
"""

from testbed.report.html import REPORT_NAME, render_report
from testbed.report.ladder import CaptureInfo, Ladder, Message, extract_ladder, ladder_messages
from testbed.report.roles import DEFAULT_COLUMNS, RoleMap
from testbed.report.svg import Note, render_ladder_svg

__all__ = [
    "DEFAULT_COLUMNS", "REPORT_NAME", "CaptureInfo", "Ladder", "Message", "Note", "RoleMap",
    "extract_ladder", "ladder_messages", "render_ladder_svg", "render_report",
]  # fmt: skip
