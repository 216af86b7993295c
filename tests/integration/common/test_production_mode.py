"""TINGYU_MODE=production: every process refuses to start without NATS credentials or with an
insecure registry, and starts its checks with them (docs: secrets left at a default are refused)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tingyu.cli.launcher import SERVICES, free_port
from tingyu.common.settings import PlatformSettings

NEEDS_CREDENTIALS = "TINGYU_MODE=production needs TINGYU_NATS_CREDS"


def start(service: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run one service's main against a port nobody listens on; it must end by itself."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("TINGYU_")}
    base.update({"TINGYU_NATS_URL": f"nats://127.0.0.1:{free_port()}", **env})
    return subprocess.run(
        [sys.executable, "-m", f"tingyu.{service}.main"],
        env=base,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_refuses_production_without_nats_credentials(service: str) -> None:
    done = start(service, TINGYU_MODE="production")
    assert done.returncode != 0
    assert NEEDS_CREDENTIALS in done.stdout + done.stderr


def test_production_settings_on_both_sides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TINGYU_NATS_CREDS", raising=False)  # the suite's own admin credential
    creds = "/etc/tingyu/nats.creds"
    assert PlatformSettings(mode="production", nats_creds=creds).mode == "production"
    with pytest.raises(ValueError, match="needs TINGYU_NATS_CREDS"):
        PlatformSettings(mode="production")
    with pytest.raises(ValueError, match="TINGYU_REGISTRY_INSECURE is refused"):
        PlatformSettings(mode="production", nats_creds=creds, registry_insecure=True)
    assert PlatformSettings(mode="local", registry_insecure=True).registry_insecure
