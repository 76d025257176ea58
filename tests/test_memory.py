"""Memory stays bounded: a million requests through the core, and a burst larger than the queues.

Each test runs the core in a fresh interpreter (tests/helpers.py ``run_python``) and reads its
resident set size from /proc/self/status before and after; the collector is a loopback receiver in
this process. The growth is printed (``pytest -s``) and attached to the test report as a property.
"""

from __future__ import annotations

import json
import sys

import pytest
from helpers import QUIET_SETTINGS, clean_environment, run_python
from otlp_receivers import HttpReceiver

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")

RSS_GROWTH_LIMIT_MB = 50

MEASURE = """
    import json

    def rss_kb(field="VmRSS"):
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])

    assert _core.configure()
    header = batch_header()
    # One list of 1000 records, sent again and again: Python allocates nothing per request, so what
    # grows is the core's.
    records = [request_record(response_id=f"cmpl-{{i}}") for i in range(1000)]
    warm = 0
    for _ in range({warmup}):
        warm += _core.record_requests(header, records)
        {pace}
    {settle}
    before = rss_kb()
    accepted = 0
    for _ in range({batches}):
        accepted += _core.record_requests(header, records)
        {pace}
    flushed = _core.force_flush({flush_timeout})
    after = rss_kb()
    print(json.dumps({{"before_kb": before, "after_kb": after, "peak_kb": rss_kb("VmHWM"),
                      "accepted": accepted, "warm_accepted": warm, "flushed": flushed, **_core.stats()}}), flush=True)
"""


def measure(env: dict[str, str], **parameters: object) -> dict:
    result = run_python(MEASURE.format(**parameters), env, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def report(record_property, label: str, row: dict) -> float:
    growth_mb = (row["after_kb"] - row["before_kb"]) / 1024
    record_property("rss_growth_mb", round(growth_mb, 1))
    before, after = row["before_kb"] / 1024, row["after_kb"] / 1024
    print(f"\n{label}: RSS {before:.1f} -> {after:.1f} MB ({growth_mb:+.1f} MB), {row}")
    return growth_mb


def test_a_million_requests_through_the_core_grow_rss_by_less_than_50_mb(record_property):
    # Every request becomes a span and metric points and is exported to a sink that only counts.
    # The caller syncs with the recorder after each batch (``stats()``), so that all of them go
    # through rather than being dropped by a caller far faster than any collector.
    with HttpReceiver(keep_bodies=False) as sink:
        env = clean_environment(OTEL_EXPORTER_OTLP_ENDPOINT=sink.endpoint, **QUIET_SETTINGS)
        row = measure(env, warmup=50, batches=1000, pace="_core.stats()", settle="", flush_timeout=60.0)
        assert len(sink.requests_to("/v1/traces")) > 0
    growth = report(record_property, "1M requests", row)
    assert row["accepted"] == 1_000_000
    assert row["flushed"] is True
    assert row["requests_recorded"] == 1_050_000
    assert row["requests_dropped"] == row["spans_dropped"] == row["spans_export_failed"] == 0
    assert row["spans_exported"] == 1_050_000
    assert growth <= RSS_GROWTH_LIMIT_MB


def test_a_burst_larger_than_the_queues_is_dropped_and_counted_in_bounded_memory(record_property):
    # The collector holds every export: the span queue (64) fills, the recorder waits for it (2 s)
    # and the request queue (8192) fills behind it, while the caller sends a million requests as
    # fast as it can. Every call returns; what did not fit is dropped and counted.
    with HttpReceiver(keep_bodies=False) as held:
        held.hold()
        env = clean_environment(
            OTEL_EXPORTER_OTLP_ENDPOINT=held.endpoint,
            OTEL_BSP_MAX_QUEUE_SIZE="64",
            OTEL_METRICS_EXPORTER="none",
            **{**QUIET_SETTINGS, "OTEL_EXPORTER_OTLP_TIMEOUT": "30000"},
        )
        row = measure(env, warmup=20, batches=1000, pace="", settle="", flush_timeout=0.5)
        assert held.requests_to("/v1/traces"), "an export reached the collector and was held"
        held.release()
    growth = report(record_property, "burst of 1M requests, collector held", row)
    assert row["flushed"] is False
    assert row["requests_dropped"] > 0
    assert row["accepted"] + row["warm_accepted"] == row["requests_recorded"]
    assert row["requests_recorded"] + row["requests_dropped"] == 1_020_000
    assert row["spans_dropped"] > 0
    assert row["spans_queued"] + row["spans_dropped"] == row["requests_recorded"]
    assert row["spans_exported"] == 0
    assert growth <= RSS_GROWTH_LIMIT_MB
