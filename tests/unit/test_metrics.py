"""The Prometheus text the endpoint serves, from the stats the daemon publishes (no sockets:
the endpoint itself is tested inside a lab namespace, tests/integration/test_observe.py)."""

from __future__ import annotations

import dataclasses
import re

from knocknft.config import ListenAddress, Options, parse_address
from knocknft.daemon.metrics import render_metrics
from knocknft.daemon.run import keep_restart_only
from knocknft.daemon.stats import STATS
from tests.unit.support import sample_stats

# name, optional {labels}, value: what the text format 0.0.4 allows on a sample line.
SAMPLE_LINE = re.compile(r'^[a-z_][a-z0-9_]*(\{[a-z_]+="[^"]*"\})? -?[0-9.e+]+$')


def test_every_stat_has_help_type_and_one_sample_stats() -> None:
    text = render_metrics(sample_stats(knocks=5, evictions=2))
    lines = text.splitlines()
    for stat in STATS:
        name = stat.metric_name
        assert f"# HELP {name} {stat.help}" in lines
        assert f"# TYPE {name} {stat.kind}" in lines
        assert sum(line.startswith(f"{name} ") for line in lines) == 1
    assert "knocknft_knocks_total 5" in lines and "knocknft_evictions_total 2" in lines
    assert "knocknft_attempts_cap 65536" in lines
    assert 'knocknft_info{version="0.1.0"} 1' in lines
    assert all(SAMPLE_LINE.match(line) for line in lines if not line.startswith("#")), text
    assert text.endswith("\n")


def test_values_missing_from_the_stats_are_left_out() -> None:
    text = render_metrics({"version": 'a"b', "knocks": 1})
    assert "knocknft_knocks_total 1" in text and "knocknft_opens_total" not in text
    assert 'knocknft_info{version="a\\"b"} 1' in text


def test_a_reload_keeps_the_running_metrics_endpoint_nflog_group_and_table() -> None:
    old = Options()
    new = dataclasses.replace(
        old,
        metrics=ListenAddress(parse_address("127.0.0.1"), 9641),
        nflog_group=9,
        table="t2",
        max_attempts=10,
    )
    kept, changed = keep_restart_only(old, new)
    assert changed == ["table", "nflog_group", "metrics"]
    # The table keeps logging to the group the socket is bound to, and no table of ours is
    # left behind dropping the services; other options do change.
    assert (kept.nflog_group, kept.metrics, kept.table) == (old.nflog_group, None, old.table)
    assert kept.max_attempts == 10
    assert keep_restart_only(new, new) == (new, [])
