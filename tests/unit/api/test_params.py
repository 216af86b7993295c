"""Identifier lists in query strings: folded, bounded, each value judged by its form before a lookup."""

from __future__ import annotations

import pytest

from tingyu.api import params
from tingyu.common.errors import InvalidParameter, MissingParameter


def test_job_ids_fold_and_take_the_contracts_example() -> None:
    job = "a" * 32
    assert params.job_id_list(f"{job}, jobid,{job},jobid", 10) == [job, "jobid"]


@pytest.mark.parametrize("value", ["a" * 65, "x\ny", "a.b", "a*"])
def test_a_job_id_that_can_be_no_key_is_refused_with_the_reason_in_detail(value: str) -> None:
    with pytest.raises(InvalidParameter) as refused:
        params.job_id_list(value, 10)
    assert refused.value.msg == InvalidParameter.default_msg
    assert refused.value.detail is not None
    assert refused.value.detail.startswith("jobid ")


def test_machines_by_uuid_or_nodename_and_malformed_ones() -> None:
    uuid = "tingyu-" + "b" * 32
    assert params.node_list(f"{uuid},{'b' * 32},string", 10) == [uuid, "b" * 32, "string"]
    with pytest.raises(InvalidParameter):
        params.node_list(f"{uuid}\nx", 10)


def test_missing_and_over_limit_say_what_the_parameter_holds() -> None:
    with pytest.raises(MissingParameter) as missing:
        params.deployment_list(" , ", 10, "deploymentnames")
    assert missing.value.detail == "deploymentnames is required (comma-separated deployment names)"
    with pytest.raises(InvalidParameter) as over:
        params.deployment_list("a,b,c", 2)
    assert over.value.detail == "at most 2 names per request"
