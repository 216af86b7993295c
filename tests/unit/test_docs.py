"""The documentation lists every error code the code can answer."""

from __future__ import annotations

from pathlib import Path

from tingyu.common import errors

ROOT = Path(__file__).resolve().parents[2]


def test_every_error_code_is_documented() -> None:
    text = (ROOT / "docs" / "api.md").read_text()
    codes = {
        cls.code
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.TingyuError)
    }
    codes.discard(errors.TingyuError.code)
    missing = sorted(code for code in codes if f"`{code}`" not in text)
    assert not missing, f"docs/api.md does not document {missing}"


def test_every_setting_is_in_the_readme() -> None:
    from tingyu.agent.config import AgentSettings
    from tingyu.agent.sampling import SamplerSettings
    from tingyu.api.config import ApiSettings
    from tingyu.common.settings import PlatformSettings
    from tingyu.deployer.config import DeployerSettings
    from tingyu.imager.config import ImagerSettings
    from tingyu.metering.config import MeteringSettings
    from tingyu.nodes.config import NodesSettings

    readme = (ROOT / "README.md").read_text()
    missing = []
    for cls in (
        PlatformSettings,
        ApiSettings,
        DeployerSettings,
        NodesSettings,
        ImagerSettings,
        MeteringSettings,
        AgentSettings,
        SamplerSettings,
    ):
        prefix = cls.model_config.get("env_prefix", "")
        for field in cls.model_fields:
            if field != "platform" and f"{prefix}{field.upper()}" not in readme:
                missing.append(f"{prefix}{field.upper()}")
    assert not missing, f"README.md does not explain {missing}"
