"""A compressed view holds the machines' reports in a third of their bytes and reads them as they
were written: by key, in iteration, and after a change or a delete. A view's size is 0 (every
key) or more."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tingyu.api.config import ApiSettings
from tingyu.api.views import View
from tingyu.common import subjects
from tingyu.common.bus.stores import Change, Store
from tingyu.common.models.containers import ContainerReport, NodeReport, PodPhase

UUID = "tingyu-" + "ab" * 16


def _report(uuid: str, containers: int, at: float) -> NodeReport:
    seen = {
        f"web-{index}": ContainerReport(
            name=f"web-{index}",
            revision=100 + index,
            job_id=f"job-{index:032x}",
            phase=PodPhase.RUNNING,
            podname=f"web-{index}-0123456789-{index:05x}",
            container_id=f"{index:064x}",
            image_ref="registry.example:5000/tingyu/web:1",
            started_at=at,
        )
        for index in range(containers)
    }
    return NodeReport(node_uuid=uuid, containers=seen, reported_at=at)


def _view() -> View[NodeReport]:
    return View(Store(None, subjects.REPORTED), compressed=True)  # type: ignore[arg-type]  # no bus: parse only


def test_a_report_is_held_compressed_and_read_back_as_written() -> None:
    view = _view()
    report = _report(UUID, 10, 1_800_000_000.0)
    data = report.to_bytes()
    view.apply(Change(UUID, None, 1, data))

    assert view.encoded
    assert len(view.stored[UUID]) < len(data) / 2
    assert view.get(UUID) == report
    assert list(view) == [report]


def test_a_change_and_a_delete_reach_a_compressed_view() -> None:
    view = _view()
    view.apply(Change(UUID, None, 1, _report(UUID, 3, 1.0).to_bytes()))
    later = _report(UUID, 4, 2.0)
    view.apply(Change(UUID, None, 2, later.to_bytes()))
    assert view.get(UUID) == later
    assert view.seq == 2

    view.apply(Change(UUID, None, 3, b""))
    assert view.get(UUID) is None
    assert len(view) == 0


@pytest.mark.parametrize("setting", ["jobs_view_size", "names_view_size", "reports_view_size"])
def test_a_negative_view_size_is_refused(setting: str) -> None:
    with pytest.raises(ValidationError, match=setting):
        ApiSettings.model_validate({setting: -1})
    assert getattr(ApiSettings.model_validate({setting: 0}), setting) == 0  # 0: the view holds every key
