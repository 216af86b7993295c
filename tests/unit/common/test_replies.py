"""A responder's successful reply is its envelope with the result encoded once, and reads back as
the envelope `call` decodes."""

from __future__ import annotations

import json

from tests.support.factories import spec as container_spec
from tingyu.common.bus.responders import Reply, succeeded
from tingyu.common.models.containers import DesiredContainer, DesiredListing, ListedDeployment


def test_a_success_is_the_envelope_with_the_result_encoded_once() -> None:
    entry = DesiredContainer(name="web-1", spec=container_spec(), job_id="j1", created_at=1795984465.3518183)
    result = DesiredListing(deployments={"web-1": ListedDeployment(revision=7, value=entry)}, newest=9)
    data = succeeded(result)
    through_a_dict = Reply(data=result.model_dump(mode="json", by_alias=True)).to_bytes()
    assert json.loads(data) == json.loads(through_a_dict)
    envelope = Reply.from_bytes(data)
    assert envelope.ok
    assert (envelope.code, envelope.msg, envelope.detail) == ("", "", "")
    assert DesiredListing.model_validate(envelope.data) == result
