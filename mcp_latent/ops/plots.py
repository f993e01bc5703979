"""The page's plots, drawn by matplotlib into inline SVG strings (no files, no network, no pyplot state: each
call builds its own Figure, so worker threads serving the page at once never share one)."""

from __future__ import annotations

from datetime import UTC, datetime

from mcp_latent.ops.dashboard import ProfileFigures
from mcp_latent.plotting import date_axis, svg_figure, svg_text

ANSWERED = "#2e7d32"  # green: decided by vector math
ESCALATED = "#ef6c00"  # orange: left to the calling LLM


def _svg(fig) -> str:
    return svg_text(fig)


def _times(points: list[tuple[float, int, int]]) -> list[datetime]:
    return [datetime.fromtimestamp(start, UTC) for start, _, _ in points]


def _time_axis(ax, profiles: list[ProfileFigures]) -> None:
    """Dates on x, padded by one bucket each side (a single bucket would otherwise be a zero-width range)."""
    from datetime import timedelta

    points = [(start, p.bucket_minutes) for p in profiles for start, _, _ in p.series]
    if points:
        pad = timedelta(minutes=max(width for _, width in points))
        first, last = (datetime.fromtimestamp(t, UTC) for t in (min(points)[0], max(points)[0]))
        ax.set_xlim(first - pad, last + pad)
    date_axis(ax)
    ax.grid(alpha=0.3)


def escalation_share(profiles: list[ProfileFigures]) -> str:
    """The share of verdicts left to the LLM over time, one line per profile: it falls as profiles learn."""
    fig = svg_figure(figsize=(8, 3.2))
    ax = fig.add_subplot()
    for profile in profiles:
        points = [(t, a, e) for t, a, e in profile.series if a + e]
        if points:
            shares = [e / (a + e) for _, a, e in points]
            ax.plot(_times(points), shares, marker="o", markersize=3, label=profile.name)
    ax.set_ylim(0, 1)
    ax.set_ylabel("escalated / verdicts")
    ax.set_title("Share of verdicts left to the LLM (UTC)")
    _time_axis(ax, profiles)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right", fontsize="small")
    return _svg(fig)


def answered_vs_escalated(profile: ProfileFigures) -> str:
    """Verdicts per time bucket, stacked: answered by vector math below, escalated to the LLM above."""
    fig = svg_figure(figsize=(4, 2.4))
    ax = fig.add_subplot()
    times = _times(profile.series)
    answered = [a for _, a, _ in profile.series]
    escalated = [e for _, _, e in profile.series]
    width = profile.bucket_minutes / 1440 * 0.8  # bar width in days (matplotlib's date unit)
    ax.bar(times, answered, width=width, color=ANSWERED, label="answered")
    ax.bar(times, escalated, width=width, bottom=answered, color=ESCALATED, label="escalated")
    ax.set_title(f"{profile.name}: verdicts per {_width_name(profile.bucket_minutes)}", fontsize="medium")
    _time_axis(ax, [profile])
    ax.legend(fontsize="x-small")
    return _svg(fig)


def _width_name(minutes: int) -> str:
    if minutes % 1440 == 0:
        return "day" if minutes == 1440 else f"{minutes // 1440} days"
    if minutes % 60 == 0:
        return "hour" if minutes == 60 else f"{minutes // 60} hours"
    return "minute" if minutes == 1 else f"{minutes} minutes"
