"""The HTTP API fuzzed from its own OpenAPI schema (schemathesis, hypothesis): no 5xx, no hang.

A live server on a loopback port answers; it fetches from 127.0.0.1 only and
denies private networks, so no generated URL leads to a connection anywhere.
Examples are few, derandomized, and each call has a time limit, so the run is
bounded. (schemathesis' own pytest plugin reads private pytest attributes;
its strategies are used with plain hypothesis instead.)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
from helpers.running_server import Running, running  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

from moths_framework.serve import ServeOptions, create_app, load_served_model  # noqa: E402

CALL_TIMEOUT = 10.0  # seconds: a call that takes longer is a hang
EXAMPLES = 120  # per generation mode, over all operations

# The schema documents image URLs as format "uri"; what clients really send is
# anything: broken brackets, bad ports, invalid punycode, other schemes, noise.
HOSTS = ["127.0.0.1", "[::1", "[::1]", "[zz]", "xn--a.com", "xn--", "localhost", "%zz", ""]
PORTS = ["", ":0", ":80", ":99999", ":-1", ":x"]
HOSTILE_URLS = st.one_of(
    st.builds(
        "{}://{}{}/{}".format,
        st.sampled_from(["http", "https", "file", "ftp", "HTTP", ""]),
        st.sampled_from(HOSTS),
        st.sampled_from(PORTS),
        st.text(max_size=8),
    ),
    st.text(max_size=30),
)
schemathesis.openapi.format("uri", HOSTILE_URLS)


@pytest.fixture(scope="module")
def live(serve_model_file: Path) -> Iterator[Running]:
    options = ServeOptions(
        allow_hosts=["127.0.0.1"],
        deny_private_networks=True,
        fetch_timeout=1.0,
        request_timeout=5.0,
        max_json_bytes=2**20,
        max_body_bytes=2**20,
    )
    with running(create_app([load_served_model(serve_model_file)], options)) as server:
        yield server


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_error_and_no_hang(live: Running, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_dict(live.app.openapi())
    called = set()

    @given(case=schema.as_strategy(mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,  # the call's own timeout bounds each example
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def call(case) -> None:  # noqa: ANN001 (schemathesis' Case)
        started = time.monotonic()
        response = case.call(base_url=live.url, timeout=CALL_TIMEOUT)
        called.add(f"{case.method} {case.path}")
        assert response.status_code < 500, (case.method, case.path, response.text[:300])
        assert time.monotonic() - started < CALL_TIMEOUT

    call()
    assert {"POST /process", "POST /v1/classify"} <= called
