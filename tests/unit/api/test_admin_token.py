"""The bootstrap admin token: `TINGYU_API_ADMIN_TOKEN` when set, else one made once in var/api."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from tingyu.api.config import ApiSettings
from tingyu.cli.launcher import ADMIN_TOKEN_ENV, PlatformConfig


def test_without_the_setting_one_token_is_made_once_readable_only_by_its_owner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ADMIN_TOKEN_ENV, raising=False)
    config = PlatformConfig(state_dir=tmp_path / "var")
    token = config.admin_token()
    assert len(token) >= 16
    assert config.admin_token_file.read_text().strip() == token
    assert stat.S_IMODE(config.admin_token_file.stat().st_mode) == 0o600
    assert PlatformConfig(state_dir=tmp_path / "var").admin_token() == token  # the next start


def test_the_setting_wins_whatever_var_holds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ADMIN_TOKEN_ENV, raising=False)
    PlatformConfig(state_dir=tmp_path).admin_token()
    given = "x" * 20
    assert PlatformConfig(state_dir=tmp_path, extra_env={ADMIN_TOKEN_ENV: given}).admin_token() == given
    monkeypatch.setenv(ADMIN_TOKEN_ENV, "y" * 20)
    assert PlatformConfig(state_dir=tmp_path).admin_token() == "y" * 20


def test_a_short_admin_token_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ADMIN_TOKEN_ENV, "short")
    with pytest.raises(ValidationError, match="16 characters"):
        ApiSettings()
