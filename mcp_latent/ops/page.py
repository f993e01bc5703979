"""The usage page as one self-contained HTML document: inline CSS, plots as inline SVG, no script, no external
link, so it opens offline (a saved report) and behind any firewall (the server's page at `/`)."""

from __future__ import annotations

import html
import logging
from datetime import UTC, datetime

from mcp_latent.ops.dashboard import Dashboard

log = logging.getLogger(__name__)

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 70em; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
.muted { color: #666; font-size: 0.9em; }
.cards { display: flex; flex-wrap: wrap; gap: 0.8em; margin: 1em 0; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 0.6em 1em; min-width: 10em; }
.card b { display: block; font-size: 1.5em; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { padding: 0.25em 0.8em; border-bottom: 1px solid #eee; }
th { text-align: left; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; } .plots svg { max-width: 100%; height: auto; }
.note { background: #fff8e1; border: 1px solid #ffe082; padding: 0.5em 1em; border-radius: 6px; }
"""


def _n(value: object) -> str:
    """A count with thousands separators, or text; '–' for none."""
    if value is None:
        return "–"
    return f"{value:,}" if isinstance(value, int) else html.escape(str(value))


def _pct(share: float | None) -> str:
    return "–" if share is None else f"{share:.1%}"


def _ms(milliseconds: float | None) -> str:
    return "–" if milliseconds is None else f"{milliseconds:,.2f}"


def _table(headers: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="n">{_n(c)}</td>' if i else f"<td>{_n(c)}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _plots(board: Dashboard) -> str:
    if not any(p.series for p in board.profiles):
        return '<p class="muted">No verdicts yet: plots appear after the first <code>evaluate</code>.</p>'
    from mcp_latent.ops import plots  # imports matplotlib only inside its functions

    try:
        parts = [plots.escalation_share(board.profiles)]
        parts += [plots.answered_vs_escalated(p) for p in board.profiles if p.series]
    except ImportError:
        return (
            '<p class="note">Plots need matplotlib, which is not installed: '
            "<code>pip install 'mcp-latent[plots]'</code> (or <code>pip install matplotlib</code>) and reload. "
            "The tables below hold the same figures.</p>"
        )
    return '<div class="plots">' + "".join(f"<figure>{svg}</figure>" for svg in parts) + "</div>"


def render(board: Dashboard, refresh_seconds: int | None = None) -> str:
    """The page; `refresh_seconds` makes a browser reload it (the live page), None for a saved report."""
    when = datetime.fromtimestamp(board.generated_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    verdicts = board.llm_calls_saved + board.escalated
    share = board.escalated / verdicts if verdicts else None
    cards = [
        ("verdicts answered by vector math", board.llm_calls_saved),
        ("escalated to the LLM", board.escalated),
        ("share left to the LLM", _pct(share)),
        ("LLM calls saved (est.)", board.llm_calls_saved),
        ("LLM tokens saved (est.)", board.tokens_saved),
    ]
    profile_rows = [
        [
            p.name,
            p.totals["answered"],
            p.totals["escalated"],
            _pct(p.totals["escalation_rate"]),
            p.totals["taught"],
            p.totals["agreed"] + p.totals["disagreed"],
            _pct(p.totals["agreement"]),
            p.totals["answered"] * board.tokens_per_judgement,
        ]
        for p in board.profiles
    ]
    tool_rows = [
        [name, t["calls"], t["errors"], _ms(t["mean_ms"]), _ms(t["p50_ms_at_most"]), _ms(t["p95_ms_at_most"])]
        for name, t in board.tools.items()
    ]
    server = ""
    if board.server is not None:
        s = board.server
        state = "ready" if s.get("ready") else html.escape(str(s.get("phase", "starting")))
        server = f'<p class="muted">Server: {state}; model {html.escape(str(s.get("model", "–")))}; ' + (
            f"{_n(s.get('handoffs'))} handoffs stored.</p>"
        )
    refresh = f'<meta http-equiv="refresh" content="{refresh_seconds}">' if refresh_seconds else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">{refresh}<title>mcp-latent usage</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>
<body>
<h1>mcp-latent: what vector math took off the LLM</h1>
<p class="muted">Generated {when} from the data dir's usage stats (every server on it).</p>{server}
<div class="cards">{"".join(f"<div class='card'><b>{_n(v)}</b>{html.escape(k)}</div>" for k, v in cards)}</div>
<h2>Answered vs escalated over time</h2>
{_plots(board)}
<h2>Per profile</h2>
{_table(["profile", "answered", "escalated", "share escalated", "taught", "spot checks", "agreement",
         "tokens saved (est.)"], profile_rows)}
<h2>Latency per tool</h2>
{_table(["tool", "calls", "errors", "mean ms", "p50 ms (at most)", "p95 ms (at most)"], tool_rows)
 if tool_rows else '<p class="muted">No tool calls recorded yet.</p>'}
<h2>How the savings are estimated</h2>
<p>Every answered verdict is one evaluation the calling LLM did not have to make; an escalated one still goes to
it. LLM calls saved = answered verdicts; tokens saved = answered verdicts × {board.tokens_per_judgement:,} tokens per
judgement (the <code>MCP_LATENT_LLM_TOKENS_PER_JUDGEMENT</code> setting: a ~300-token proposal, ~250 tokens of
instructions and a ~150-token answer; set it to your prompts' size). Agreement is the share of spot checks (a teach
of a text the profile had answered) whose label matched the verdict. Latency is measured on the server, per tool
call, and counted in buckets: p50/p95 are the bucket's upper bound.</p>
</body></html>
"""  # fmt: skip
