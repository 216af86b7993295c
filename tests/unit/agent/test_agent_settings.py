"""The agent's numeric settings are bounded: a value out of range stops the process at start with
exit code 2 and one line naming the setting, never a stack trace or a loop that divides by zero."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import BaseModel, ValidationError
from pydantic_settings import BaseSettings

from tingyu.agent.config import AgentSettings
from tingyu.agent.sampling import SamplerSettings
from tingyu.common.service import settings_checked


@pytest.mark.parametrize(
    ("model", "variable", "value"),
    [
        (AgentSettings, "TINGYU_AGENT_RESYNC_S", "0"),
        (AgentSettings, "TINGYU_AGENT_FULL_READ_S", "0"),
        (AgentSettings, "TINGYU_AGENT_HEARTBEAT_S", "-1"),
        (AgentSettings, "TINGYU_AGENT_PARALLEL", "0"),
        (AgentSettings, "TINGYU_AGENT_LOGS_MAX_BYTES", str(2 * 1024 * 1024)),  # over one NATS message
        (AgentSettings, "TINGYU_AGENT_EXEC_MAX_SESSIONS", "100000"),
        (AgentSettings, "TINGYU_AGENT_METRICS_PORT", "70000"),
        (SamplerSettings, "TINGYU_AGENT_SAMPLE_S", "0"),
        (SamplerSettings, "TINGYU_AGENT_SAMPLE_READINGS", "0"),
        (SamplerSettings, "TINGYU_AGENT_SAMPLE_BUFFER", "-5"),
    ],
)
def test_a_setting_out_of_range_is_refused(
    monkeypatch: pytest.MonkeyPatch, model: type[BaseSettings], variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as refused:
        model()
    assert [e["loc"] for e in refused.value.errors()] == [(variable.removeprefix("TINGYU_AGENT_").lower(),)]


def test_the_defaults_and_the_test_suites_fast_values_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    assert AgentSettings().resync_s == 30.0
    monkeypatch.setenv("TINGYU_AGENT_HEARTBEAT_S", "0.5")
    monkeypatch.setenv("TINGYU_AGENT_RESYNC_S", "2")
    monkeypatch.setenv("TINGYU_AGENT_STOP_TIMEOUT_S", "0")
    assert AgentSettings().heartbeat_s == 0.5


def test_the_agent_started_with_a_zero_resync_exits_2_with_one_line_and_no_trace() -> None:
    env = {**os.environ, "TINGYU_AGENT_RESYNC_S": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "tingyu.agent.main"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "agent: setting resync_s of AgentSettings refused: "
        "Input should be greater than or equal to 0.1 (got '0')"
    )


def test_a_validation_error_that_is_not_about_settings_is_not_reported_as_one() -> None:
    class Report(BaseModel):
        seq: int

    with pytest.raises(ValidationError), settings_checked("agent"):
        Report.model_validate({"seq": "x"})
