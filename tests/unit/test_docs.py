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
