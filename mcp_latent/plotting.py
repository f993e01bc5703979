"""The one way mcp-latent draws: matplotlib (the optional `[plots]` extra), imported only when a plot is asked
for, headless. Every PNG (`profiles build`/`tune` curves, `profiles eval`, `profiles stats --plot`) goes through
`figure`, and every inline SVG of the usage page through `svg_figure` + `svg_text`, so a missing matplotlib reads
the same everywhere: one line saying what to install."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mcp_latent.errors import LatentError

INSTALL_HINT = "install matplotlib: .venv/bin/pip install matplotlib (or pip install 'mcp-latent[plots]')"


class PlotsUnavailable(LatentError):
    """matplotlib is not installed; the message says how to install it."""


def pyplot() -> Any:
    """`matplotlib.pyplot` on the non-interactive Agg backend (no display needed), or PlotsUnavailable."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PlotsUnavailable(INSTALL_HINT) from exc
    return plt


@contextmanager
def figure(path: Path, dpi: int = 110, **subplots: Any) -> Iterator[tuple[Any, Any]]:
    """`(fig, axes)` from `plt.subplots(**subplots)`; written to `path` as a PNG when the block ends without an
    error (its folder created), and closed in any case (pyplot keeps every open figure alive)."""
    plt = pyplot()
    fig, axes = plt.subplots(**subplots)
    try:
        yield fig, axes
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)


def svg_figure(**figure_kwargs: Any) -> Any:
    """A pyplot-free `Figure` (no global state: worker threads drawing pages at once never share one)."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise PlotsUnavailable(INSTALL_HINT) from exc
    return Figure(**figure_kwargs)


def svg_text(fig: Any) -> str:
    """The figure as an inline `<svg>` element: stable ids, text kept as text, no XML prolog (not allowed in HTML)."""
    import io

    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "mcp-latent", "svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def date_axis(ax: Any, max_ticks: int = 6) -> None:
    """Concise date ticks on x."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    locator = AutoDateLocator(maxticks=max_ticks)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
