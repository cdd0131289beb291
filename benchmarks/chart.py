"""A small horizontal bar chart written as plain SVG (no plotting library): ``e2e.py``'s figures side by side."""

from __future__ import annotations

from html import escape
from pathlib import Path

BAR, GAP, LABEL, WIDTH, TOP = 22, 8, 300, 360, 46


def bar_chart(title: str, groups: dict[str, dict[str, float]], *, target: float | None = None) -> str:
    """An SVG of one bar per ``groups[group][label]`` ratio (0..1 spans the plot), grouped under each
    ``group`` heading, with a dashed line at ``target``."""
    rows: list[str] = []
    y = TOP
    for group, bars in groups.items():
        rows.append(f'<text x="4" y="{y + 14}" font-weight="bold">{escape(group)}</text>')
        y += BAR
        for label, value in bars.items():
            length = max(0.0, min(value, 1.0)) * WIDTH
            rows.append(f'<text x="{LABEL - 8}" y="{y + 15}" text-anchor="end">{escape(label)}</text>')
            rows.append(f'<rect x="{LABEL}" y="{y}" width="{length:.1f}" height="{BAR - 4}" fill="{_colour(label)}"/>')
            rows.append(f'<text x="{LABEL + length + 6:.1f}" y="{y + 15}">{value:.2f}</text>')
            y += BAR
        y += GAP
    if target is not None:
        x = LABEL + target * WIDTH
        rows.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{y}" stroke="#444" stroke-dasharray="4 3"/>')
        rows.append(f'<text x="{x:.1f}" y="{TOP - 6}" text-anchor="middle">target {target:g}</text>')
    width, height = LABEL + WIDTH + 60, y + 10
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}"'
        ' font-family="sans-serif" font-size="13">'
        f'<rect width="{width}" height="{height}" fill="white"/>'
        f'<text x="4" y="20" font-size="15" font-weight="bold">{escape(title)}</text>'
    )
    return "\n".join([head, *rows, "</svg>\n"])


def write_chart(path: Path, title: str, groups: dict[str, dict[str, float]], *, target: float | None = None) -> None:
    """:func:`bar_chart` written to ``path`` (its folder made if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(bar_chart(title, groups, target=target), encoding="utf-8")


def _colour(label: str) -> str:
    """This package's bars in one colour, the peers' in another."""
    return "#1f77b4" if label.startswith("fastapi-kc-m2m") else "#ff7f0e"
