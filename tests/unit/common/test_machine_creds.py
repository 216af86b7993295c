"""A machine's credential is current when it grants what enrollment grants today."""

from __future__ import annotations

from pathlib import Path

from tingyu.common.auth import jwt
from tingyu.common.auth.permissions import creds_are_current, machine_permissions
from tingyu.common.names import new_node_identity


def write_creds(path: Path, node_uuid: str, permissions: dict[str, object]) -> Path:
    seed = jwt.new_seed("user")
    token = jwt.user_jwt(jwt.new_seed("account"), jwt.public_key(seed), node_uuid, permissions)
    path.write_text(jwt.creds(token, seed))
    return path


def test_a_credential_signed_for_older_permissions_is_not_current(tmp_path: Path) -> None:
    uuid, _ = new_node_identity()
    today = machine_permissions(uuid)
    assert creds_are_current(write_creds(tmp_path / "now.creds", uuid, today))

    # Before one desired-state key per deployment: a direct get of the bare uuid key, no listing.
    before = {
        **today,
        "pub": {
            "allow": [*today["pub"]["allow"][:3], f"$JS.API.DIRECT.GET.KV_ty_desired.$KV.ty_desired.{uuid}"]
        },
    }
    assert not creds_are_current(write_creds(tmp_path / "old.creds", uuid, before))
    other, _ = new_node_identity()  # signed for another machine's subjects than the uuid it names
    assert not creds_are_current(write_creds(tmp_path / "other.creds", uuid, machine_permissions(other)))
    assert not creds_are_current(tmp_path / "missing.creds")
    (tmp_path / "junk.creds").write_text("not a creds file")
    assert not creds_are_current(tmp_path / "junk.creds")
