"""Tokens and cost per agent per day, and the largest sessions, as data for a
server-drawn SVG chart.

The days come from the store's `usage_by_day` (each entry's usage on the day
it was made), the largest sessions from its `largest`, the totals from its
`stats`: three store reads, each of the agent the page is filtered to.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import attrs

from aisopod_session._model import AgentStats, Session
from aisopod_session._store import SessionStore

__all__ = ["Bar", "Chart", "Usage", "usage"]

LARGEST = 10
"""The sessions the page lists, the most tokens first."""

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")

CHART_WIDTH = 720
CHART_HEIGHT = 220
_LEFT = 60
_BOTTOM = 24


@attrs.frozen
class Bar:
    """One agent's tokens on one day: a rectangle of the stacked bar chart."""

    x: float
    y: float
    width: float
    height: float
    color: str
    agent: str
    day: date
    tokens: int
    cost: float


@attrs.frozen
class Chart:
    """The chart's rectangles, axis labels and legend, in SVG user units."""

    width: int
    height: int
    bars: tuple[Bar, ...]
    day_labels: tuple[tuple[float, str], ...]
    max_tokens: int
    legend: tuple[tuple[str, str], ...]


@attrs.frozen
class Usage:
    """What the usage page shows."""

    days: int
    totals: tuple[AgentStats, ...]
    chart: Chart
    largest: tuple[Session, ...]
    """Of the sessions active in the window."""


def _days_ago(store: SessionStore, days: int) -> datetime:
    """The start of the day `days` days before the store's today."""
    today = store.clock.now().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days - 1)


def usage(store: SessionStore, days: int = 30, *, agent: str | None = None) -> Usage:
    """Usage of the last `days` days, per agent per day, and the ten largest sessions."""
    start = _days_ago(store, days)
    per_day: dict[tuple[str, date], list[float]] = {
        (d.agent_id, d.day): [d.tokens, d.cost]
        for d in store.usage_by_day(since=start, agent_id=agent)
    }
    return Usage(
        days=days,
        totals=tuple(s for s in store.stats() if agent is None or s.agent_id == agent),
        chart=_chart(per_day, start.date(), days),
        largest=store.largest(limit=LARGEST, agent_id=agent, updated_after=start),
    )


def _chart(per_day: dict[tuple[str, date], list[float]], first: date, days: int) -> Chart:
    agents = sorted({agent for agent, _ in per_day})
    colors = {agent: PALETTE[i % len(PALETTE)] for i, agent in enumerate(agents)}
    day_list = [first + timedelta(days=i) for i in range(days)]
    totals = [sum(int(per_day.get((a, d), [0])[0]) for a in agents) for d in day_list]
    top = max([*totals, 1])
    plot_width = CHART_WIDTH - _LEFT
    plot_height = CHART_HEIGHT - _BOTTOM
    step = plot_width / days
    bars: list[Bar] = []
    for i, day in enumerate(day_list):
        y = float(plot_height)
        for agent in agents:
            tokens, cost = per_day.get((agent, day), [0, 0.0])
            if not tokens:
                continue
            height = plot_height * tokens / top
            y -= height
            bars.append(
                Bar(
                    _LEFT + i * step + 1,
                    y,
                    max(step - 2, 1),
                    height,
                    colors[agent],
                    agent,
                    day,
                    int(tokens),
                    float(cost),
                )
            )
    labels = tuple(
        (_LEFT + i * step + step / 2, day.strftime("%m-%d"))
        for i, day in enumerate(day_list)
        if i % max(days // 6, 1) == 0
    )
    return Chart(CHART_WIDTH, CHART_HEIGHT, tuple(bars), labels, top, tuple(colors.items()))
