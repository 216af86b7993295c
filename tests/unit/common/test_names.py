"""Identifiers are judged by their exact form: a full match with a length limit, never `$`."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tingyu.common.names import (
    is_deployment_name,
    is_full_image,
    is_image_name,
    is_image_tag,
    is_job_id,
    is_node_uuid,
    is_nodename,
    new_job_id,
    new_node_identity,
    registry_of,
)


def test_the_contracts_examples_pass() -> None:
    assert is_deployment_name("25573790700e807cd563ddc659cdd9f9pop2p1")
    assert is_deployment_name("25573790700e807cd563ddc659cdd9f9vdp1")
    assert is_nodename("25573790700e807cd563ddc659cdd9f9")
    assert is_nodename("abb23dbf59397919f38ad64f4767dae91590138827537")
    assert is_node_uuid("tingyu-73bc6b60935cc7001c9d939109b0dfc0")
    assert is_image_tag("v6.1333")
    assert is_image_tag("v1.33")
    assert is_image_name("pcdn")
    assert is_image_name("doc")


def test_what_the_platform_makes_passes() -> None:
    uuid, nodename = new_node_identity()
    assert is_node_uuid(uuid)
    assert is_nodename(nodename)
    assert is_job_id(new_job_id())


@pytest.mark.parametrize(
    ("check", "good"),
    [
        (is_job_id, "0" * 32),
        (is_deployment_name, "web-1"),
        (is_node_uuid, "tingyu-" + "a" * 32),
        (is_nodename, "a" * 32),
        (is_image_name, "tytest/busybox"),
        (is_image_tag, "v6.1333"),
    ],
)
@pytest.mark.parametrize("tail", ["\n", "\r\n", " ", "*", ">", "\x00"])
def test_a_trailing_character_is_refused(check: Callable[[str], bool], good: str, tail: str) -> None:
    assert check(good)
    assert not check(good + tail)
    assert not check(tail + good)


@pytest.mark.parametrize(
    ("check", "longest"),
    [
        (is_job_id, "a" * 32),
        (is_deployment_name, "a" * 63),
        (is_node_uuid, "tingyu-" + "a" * 32),
        (is_nodename, "a" * 63),
        (is_image_name, "a" * 255),
        (is_image_tag, "v" * 128),
    ],
)
def test_length_limits(check: Callable[[str], bool], longest: str) -> None:
    assert check(longest)
    assert not check(longest + "a")
    assert not check(longest + "a" * 4100)


def test_malformed_identifiers() -> None:
    assert not is_job_id("A" * 32)  # upper case is not what new_job_id makes
    assert not is_job_id("nope")
    assert not is_deployment_name("-web")
    assert not is_deployment_name("Web")
    assert not is_deployment_name("a.b")
    assert not is_node_uuid("tingyu-" + "g" * 32)
    assert not is_nodename("ABC")
    assert not is_image_tag(".v1")
    assert not is_image_name("Pcdn")


def test_full_image_references() -> None:
    assert is_full_image("127.0.0.1:5000/tytest/busybox")
    assert is_full_image("registry.example.com:5000/pcdn")
    assert is_full_image("localhost/pcdn")
    assert not is_full_image("127.0.0.1:5000/tytest/busybox\n")
    assert not is_full_image("127.0.0.1:5000/Bad")
    assert not is_full_image("bad host:5000/pcdn")
    assert registry_of("127.0.0.1:5000/tytest/busybox:1") == "127.0.0.1:5000"
    assert registry_of("Registry.Example.com/pcdn:1") == "registry.example.com"
    assert registry_of("pcdn:v1") == "docker.io"
    assert registry_of("library/pcdn:v1") == "docker.io"
