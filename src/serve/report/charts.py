"""Charts as inline SVG, drawn here, so that the page needs no scripts and the serve extra no matplotlib.

Names on the charts are written by sellers: every one is shortened first, then escaped.
"""
from __future__ import annotations

import html
import math

from reportguard.core.labels import BY_NAME

from ..sellers import UNKNOWN_PLATFORM, VIOLATION_LABELS, SellerStats
from .tally import Tally

COLOURS = {"report_sale": "#b3261e", "false_ad": "#e8710a", "credential_missing": "#c9a100", "testing_service": "#3b78c3"}


def histogram_svg(label: str, counts: list[int], width: int = 340, height: int = 200) -> str:
    """Bars of listings per probability bin, on a log scale: most listings sit near 0 and would
    flatten every other bar on a linear one."""
    left, right, top, bottom = 46, 10, 12, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(counts) if counts else 0
    log_peak = math.log10(peak + 1) or 1.0
    bar_w = plot_w / len(counts)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'role="img" aria-label="{html.escape(label)} score histogram">']
    decade = 1
    while decade <= peak:
        y = top + plot_h - math.log10(decade + 1) / log_peak * plot_h
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{left - 5}" y="{y + 4:.1f}" class="tick" text-anchor="end">{decade:,}</text>')
        decade *= 10
    for k, count in enumerate(counts):
        h = math.log10(count + 1) / log_peak * plot_h
        x = left + k * bar_w
        parts.append(f'<rect x="{x + 0.5:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w - 1:.1f}" height="{h:.1f}" '
                     f'fill="{COLOURS[label]}"><title>{k / len(counts):.2f}–{(k + 1) / len(counts):.2f}: {count:,}</title></rect>')
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" class="axis"/>')
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        x = left + tick * plot_w
        parts.append(f'<text x="{x:.1f}" y="{top + plot_h + 15}" class="tick" text-anchor="middle">{tick:g}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 3}" class="axis-label" text-anchor="middle">p_{html.escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def bar_chart_svg(bars: list[tuple[str, list[tuple[str, int]]]], width: int = 860, label_width: int = 250) -> str:
    """Horizontal stacked bars, one per (name, [(label, count)]); names are escaped and shortened."""
    bar_h, gap, top = 18, 7, 4
    height = top + len(bars) * (bar_h + gap) + 4
    peak = max((sum(v for _, v in segs) for _, segs in bars), default=0) or 1
    scale = (width - label_width - 60) / peak
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">']
    for k, (name, segments) in enumerate(bars):
        y = top + k * (bar_h + gap)
        parts.append(f'<text x="{label_width - 8}" y="{y + 13}" class="name" text-anchor="end">'
                     f'<title>{html.escape(name)}</title>{html.escape(shorten(name, 22))}</text>')
        x = float(label_width)
        for label, value in segments:
            if value:
                parts.append(f'<rect x="{x:.1f}" y="{y}" width="{value * scale:.1f}" height="{bar_h}" fill="{COLOURS[label]}">'
                             f'<title>{html.escape(BY_NAME[label].zh)} {label}: {value:,}</title></rect>')
                x += value * scale
        parts.append(f'<text x="{x + 5:.1f}" y="{y + 13}" class="value">{sum(v for _, v in segments):,}</text>')
    parts.append(f'<line x1="{label_width}" x2="{label_width}" y1="0" y2="{height}" class="axis"/></svg>')
    return "".join(parts)


def shorten(text: str, limit: int) -> str:
    """Cut before escaping, so an entity is never cut in half."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def platform_bars(t: Tally, limit: int = 15) -> list[tuple[str, list[tuple[str, int]]]]:
    """Flagged listings per platform, split by each listing's most severe label; the rest summed."""
    flagged = sorted(((p or UNKNOWN_PLATFORM, s) for p, s in t.platforms.items() if s.flagged),
                     key=lambda item: (-item[1].flagged, item[0]))
    bars = [(name, [(x, s.by_top_label[x]) for x in VIOLATION_LABELS]) for name, s in flagged[:limit]]
    rest = flagged[limit:]
    if rest:
        bars.append((f"其他 {len(rest)} 个平台 / {len(rest)} more",
                     [(x, sum(s.by_top_label[x] for _, s in rest)) for x in VIOLATION_LABELS]))
    return bars


def seller_name(s: SellerStats) -> str:
    shop = s.shop_name or s.shop_id
    return f"{shop} · {s.platform or UNKNOWN_PLATFORM}"
