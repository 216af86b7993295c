"""The file interfaces' checks of `filepath` and their download header."""

from __future__ import annotations

import pytest

from tingyu.api.params import check_path as _check_path
from tingyu.api.routes.files import disposition as _disposition
from tingyu.common.errors import InvalidParameter, MissingParameter


@pytest.mark.parametrize("path", ["/data/hello.txt", "/", "/a b/c.txt", "/数据/文件.log"])
def test_absolute_normalised_paths_pass(path: str) -> None:
    _check_path(path)


@pytest.mark.parametrize(
    "path",
    [
        "data/hello.txt",
        "./x",
        "/data/../etc/passwd",
        "/data/./x",
        "//data",
        "/data/",
        "/a\0b",
        "/" + "a" * 5000,
    ],
)
def test_other_paths_are_refused(path: str) -> None:
    with pytest.raises(InvalidParameter) as refused:
        _check_path(path)
    assert refused.value.detail


def test_an_empty_path_is_missing() -> None:
    with pytest.raises(MissingParameter):
        _check_path("")


def test_disposition_names_the_file_for_every_client() -> None:
    assert _disposition("hello.txt") == "attachment; filename=\"hello.txt\"; filename*=UTF-8''hello.txt"
    header = _disposition('报告"1".txt')
    assert header.isascii()
    assert "filename*=UTF-8''%E6%8A%A5%E5%91%8A%221%22.txt" in header
