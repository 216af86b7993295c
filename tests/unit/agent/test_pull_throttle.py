"""The pull cap's pieces that need nothing running: the rate setting, the token bucket, the image
reference as the proxy splits it and the registry it reaches upstream."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tingyu.agent.config import AgentSettings
from tingyu.agent.pull_proxy import InsecureRegistries, PullProxies, Reference, split_reference
from tingyu.agent.throttle import TokenBucket, parse_rate
from tingyu.common.models.remote import MAX_PULL_RATE


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("", 0),
        ("0", 0),
        ("1000000", 1_000_000),
        ("800k", 800 * 1024),
        ("800K", 800 * 1024),
        ("5M", 5 * 1024**2),
        ("5MiB", 5 * 1024**2),
        ("1.5m", 1536 * 1024),
        ("2G", 2 * 1024**3),
        (" 64kB/s ", 64 * 1024),
        (3000, 3000),
    ],
)
def test_rates_are_read_in_binary_units(text: str | int, rate: int) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize(
    "text", ["fast", "5T", "-1", "5 M M", "1e6", "101G", str(MAX_PULL_RATE + 1), "9" * 40]
)
def test_a_rate_that_is_not_one_is_refused_with_its_text(text: str) -> None:
    with pytest.raises(ValueError, match="pull rate"):
        parse_rate(text)


def test_the_agent_setting_takes_the_text_of_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINGYU_AGENT_PULL_RATE", "5M")
    assert AgentSettings().pull_rate == 5 * 1024**2
    monkeypatch.setenv("TINGYU_AGENT_PULL_RATE", "lots")
    with pytest.raises(ValidationError, match="5M or 800k"):
        AgentSettings()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_lets_a_burst_through_then_holds_to_its_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(1000, burst=500, clock=clock)
    assert bucket.reserve(500) == 0.0  # the burst
    assert bucket.reserve(1000) == pytest.approx(1.0)  # a second's worth more: wait a second
    assert bucket.reserve(500) == pytest.approx(1.5)  # in line behind the debt
    clock.now += 1.5
    assert bucket.reserve(0) == pytest.approx(0.0)
    clock.now += 10  # idle time refills no more than the burst
    assert bucket.reserve(500) == 0.0
    assert bucket.reserve(100) == pytest.approx(0.1)


def test_over_a_long_run_the_bucket_averages_its_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(1024 * 1024, clock=clock)
    sent = 0
    for size in [65536, 1, 40000, 300000, 7] * 40:  # however the bytes are cut up
        clock.now += bucket.reserve(size)
        sent += size
    elapsed = clock.now - 100.0
    assert sent / elapsed == pytest.approx(1024 * 1024, rel=0.02 + bucket.capacity / sent)
    assert elapsed >= (sent - bucket.capacity) / (1024 * 1024)


def test_a_bucket_needs_a_rate() -> None:
    with pytest.raises(ValueError, match="rate above 0"):
        TokenBucket(0)


@pytest.mark.parametrize(
    ("image_ref", "parts"),
    [
        ("busybox", Reference("docker.io", "library/busybox", "busybox", "latest")),
        ("busybox:1.36", Reference("docker.io", "library/busybox", "busybox", "1.36")),
        ("grafana/agent:v1", Reference("docker.io", "grafana/agent", "grafana/agent", "v1")),
        ("docker.io/busybox:1", Reference("docker.io", "library/busybox", "docker.io/busybox", "1")),
        (
            "docker.io/grafana/agent",
            Reference("docker.io", "grafana/agent", "docker.io/grafana/agent", "latest"),
        ),
        (
            "127.0.0.1:5000/tytest/x:1",
            Reference("127.0.0.1:5000", "tytest/x", "127.0.0.1:5000/tytest/x", "1"),
        ),
        ("localhost/a/b", Reference("localhost", "a/b", "localhost/a/b", "latest")),
        (
            "reg.example.com/pcdn/app:2",
            Reference("reg.example.com", "pcdn/app", "reg.example.com/pcdn/app", "2"),
        ),
    ],
)
def test_references_split_as_docker_reads_them(image_ref: str, parts: Reference) -> None:
    assert split_reference(image_ref) == parts


def test_a_reference_by_digest_is_not_proxied() -> None:
    assert split_reference("reg.example.com/pcdn/app@sha256:" + "0" * 64) is None


def test_the_proxy_names_the_same_repository_and_tag_on_its_port() -> None:
    reference = split_reference("reg.example.com:8443/pcdn/app:2")
    assert reference is not None
    assert reference.through(40123) == "127.0.0.1:40123/pcdn/app:2"


def test_upstreams_are_reached_as_docker_reaches_them() -> None:
    proxies = PullProxies(
        1024,
        own_registry="127.0.0.1:5000",
        own_registry_url="https://registry.internal",
        insecure=InsecureRegistries.of(
            {
                "RegistryConfig": {
                    "IndexConfigs": {"lab:5000": {"Secure": False}, "docker.io": {"Secure": True}},
                    "InsecureRegistryCIDRs": ["10.9.0.0/16", "not a network"],
                }
            }
        ),
    )
    assert proxies.upstreams("127.0.0.1:5000") == ["https://registry.internal"]
    assert proxies.upstreams("docker.io") == ["https://registry-1.docker.io"]
    assert proxies.upstreams("reg.example.com") == ["https://reg.example.com"]
    assert proxies.upstreams("10.8.3.4:5000") == ["https://10.8.3.4:5000"]
    for insecure in ("lab:5000", "10.9.3.4:5000", "127.0.0.2:5001", "localhost:5001", "[::1]:5002"):
        assert proxies.upstreams(insecure) == [f"https://{insecure}", f"http://{insecure}"], insecure
