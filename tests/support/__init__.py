"""Helpers the tests share (fixtures stay in `conftest.py` files): trust material and settings,
waiting on conditions, images, test data factories and peer machines that play an agent."""

from tests.support.images import build_busybox, docker_as, registry_http, remove_agent_containers
from tests.support.services import api_in_process, serving
from tests.support.trust import (
    ADMIN_TOKEN,
    AUTH,
    FAST_ENV,
    NATS_CA,
    TEST_POLICY,
    TRUST,
    bearer,
    enroll_offline,
    machine_creds,
    machine_settings,
    trusted,
)
from tests.support.waiting import TRANSIENT, TransientAnswer, eventually, raise_transient, unique

__all__ = [
    "ADMIN_TOKEN",
    "AUTH",
    "FAST_ENV",
    "NATS_CA",
    "TEST_POLICY",
    "TRANSIENT",
    "TRUST",
    "TransientAnswer",
    "api_in_process",
    "bearer",
    "build_busybox",
    "docker_as",
    "enroll_offline",
    "eventually",
    "machine_creds",
    "machine_settings",
    "raise_transient",
    "registry_http",
    "remove_agent_containers",
    "serving",
    "trusted",
    "unique",
]
