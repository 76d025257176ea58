"""Several API-server processes of one ``vllm serve`` (``--api-server-count 2``): each exports as its own
instance. Without a ``service.instance.id`` per process, the two would export the same cumulative
metric series and a backend would see one series whose counts jump back and forth.

The server is ``vllm serve`` itself (tests/real/vllm_cli.py: only the CLI starts several API servers),
instrumented by the plugin in each API-server process, exporting to one loopback OTLP/HTTP receiver.
"""

from __future__ import annotations

import collections
import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from real_helpers import vllm_version
from test_serving_real import MODEL, Server, client, start_server

API_SERVERS = 2
REQUESTS = 12
API_SERVER_INDEX = "vllm.api_server.index"


@pytest.fixture(scope="module")
def two_api_servers(model_dirs, tmp_path_factory) -> Iterator[Server]:
    if vllm_version() < (0, 11):
        pytest.skip("--api-server-count needs vLLM 0.11 or later")  # all versions tested have it
    yield from start_server(
        model_dirs["generate"],
        tmp_path_factory.mktemp("api-servers"),
        plugin=True,
        native_tracing=False,
        auto=False,
        launcher=(str(Path(__file__).with_name("vllm_cli.py")), "serve"),
        extra_args=("--api-server-count", str(API_SERVERS)),
    )


def completion(server: Server, i: int) -> str:
    # A client (and connection) per request: the listening socket is shared by the processes, and
    # connections open at the same time are accepted by both.
    with client(server) as c:
        return c.completions.create(model=MODEL, prompt=f"Request {i}", max_tokens=32, temperature=0.0).id


def test_each_api_server_process_exports_as_its_own_instance(two_api_servers):
    server = two_api_servers
    with concurrent.futures.ThreadPoolExecutor(REQUESTS) as pool:
        ids = list(pool.map(lambda i: completion(server, i), range(REQUESTS)))
    spans = server.wait_for_spans(lambda spans: len(spans) >= REQUESTS, timeout=30)
    assert len(spans) == REQUESTS, f"{len(spans)} spans for {REQUESTS} requests\n{server.log_tail()}"
    # A completion's span per prompt: the response id and the prompt's index.
    assert sorted(s.attributes["gen_ai.response.id"] for s in spans) == sorted(f"{i}-0" for i in ids)

    per_instance = collections.Counter(s.resource["service.instance.id"] for s in spans)
    per_index = collections.Counter(s.attributes.get(API_SERVER_INDEX) for s in spans)
    # Each process: one instance id, one pid, one API-server index; one host.
    identities = {
        (s.resource["service.instance.id"], s.resource["process.pid"], s.attributes.get(API_SERVER_INDEX))
        for s in spans
    }
    assert len(per_instance) == API_SERVERS, (per_instance, per_index)
    assert set(per_index) == set(range(API_SERVERS)), (per_instance, per_index)
    assert len(identities) == API_SERVERS, identities
    assert len({s.resource["host.name"] for s in spans}) == 1

    # Each process's own cumulative request count (its latest export), told apart by the resource:
    # they add up to the requests sent.
    def counts() -> dict[str, int]:
        latest: dict[str, int] = {}
        for metric in server.receiver.metrics():
            if metric.metric.name == "gen_ai.server.request.duration":
                points = metric.metric.histogram.data_points
                latest[metric.resource["service.instance.id"]] = sum(p.count for p in points)
        return latest

    deadline = time.monotonic() + 30
    while sum(counts().values()) < REQUESTS and time.monotonic() < deadline:
        time.sleep(0.2)
    assert counts() == dict(per_instance), (counts(), per_instance)

    # The engine gauges say which API server they come from, beside the engine (vLLM sends an engine
    # step's scheduler stats to one API server only, so a process may have none).
    gauges = {
        (m.resource["service.instance.id"], p[API_SERVER_INDEX], p["vllm.engine.index"])
        for m in server.receiver.metrics()
        if m.metric.name == "vllm.requests.running"
        for p in m.point_attributes()
    }
    assert gauges, server.log_tail()
    assert {(i, s) for i, s, _ in gauges} <= {(instance, index) for instance, _, index in identities}, gauges
    assert {engine for _, _, engine in gauges} == {0}
