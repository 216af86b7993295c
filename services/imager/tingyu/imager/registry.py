"""A thin client of the Registry HTTP API V2 (Distribution, Harbor, ACR): blobs, manifests, auth.

Auth follows the `WWW-Authenticate` challenge: `Basic` answers with the configured user and
password; `Bearer` fetches a token from the challenge's realm for its service and scope (with
the same credentials, when set) and reuses it until the registry challenges again.
"""

from __future__ import annotations

import base64
import re
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Generator

import httpx

from tingyu.common.errors import RegistryError
from tingyu.common.settings import PlatformSettings

MANIFEST_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    )
)
_PARAM = re.compile(r'(\w+)="([^"]*)"')


class ChallengeAuth(httpx.Auth):
    """Answers 401 challenges with Basic credentials or a Bearer token from the realm."""

    def __init__(self, user: str, password: str, tokens: httpx.AsyncClient) -> None:
        self.user = user
        self.password = password
        self.tokens = tokens
        self.header = ""

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("the registry client is asynchronous")

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if self.header:
            request.headers["Authorization"] = self.header
        response = yield request
        challenge = response.headers.get("WWW-Authenticate", "")
        if response.status_code != 401 or not challenge:
            return
        self.header = await self._answer(challenge)
        request.headers["Authorization"] = self.header
        yield request

    async def _answer(self, challenge: str) -> str:
        scheme, _, rest = challenge.partition(" ")
        if scheme.lower() == "basic":
            return basic_header(self.user, self.password)
        if scheme.lower() != "bearer":
            raise RegistryError(detail=f"unsupported registry auth scheme {scheme!r}")
        params = dict(_PARAM.findall(rest))
        realm = params.pop("realm", "")
        if not realm:
            raise RegistryError(detail="the registry's Bearer challenge names no realm")
        auth = httpx.BasicAuth(self.user, self.password) if self.user else None
        query = {k: v for k, v in params.items() if k in ("service", "scope")}
        answer = await self.tokens.get(realm, params=query, auth=auth)
        if answer.status_code != 200:
            raise RegistryError(detail=f"token request to {realm} answered {answer.status_code}")
        body = answer.json()
        token = body.get("token") or body.get("access_token")
        if not token:
            raise RegistryError(detail=f"token request to {realm} returned no token")
        return f"Bearer {token}"


def basic_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _verify(settings: PlatformSettings) -> ssl.SSLContext | bool:
    if settings.registry_insecure:
        return False
    if settings.registry_ca:
        return ssl.create_default_context(cafile=settings.registry_ca)
    return True


class RegistryClient:
    """Blob and manifest operations on one registry."""

    def __init__(self, settings: PlatformSettings, timeout: float = 120.0) -> None:
        verify = _verify(settings)
        limits = httpx.Timeout(timeout, connect=10.0)
        self._tokens = httpx.AsyncClient(verify=verify, timeout=limits)
        self._http = httpx.AsyncClient(
            base_url=settings.registry_url.rstrip("/"),
            verify=verify,
            timeout=limits,
            auth=ChallengeAuth(settings.registry_user, settings.registry_password, self._tokens),
        )

    async def close(self) -> None:
        await self._http.aclose()
        await self._tokens.aclose()

    async def ping(self) -> None:
        """GET /v2/ (answers the auth challenge once, so later streamed bodies go out authorised)."""
        response = await self._http.get("/v2/")
        _expect(response, 200, "ping")

    async def has_blob(self, name: str, digest: str) -> bool:
        return _found(await self._http.head(f"/v2/{name}/blobs/{digest}"), 200, f"HEAD blob {digest}")

    async def push_blob(self, name: str, digest: str, size: int, chunks: AsyncIterator[bytes]) -> None:
        """A monolithic upload: POST opens the session, one streamed PUT sends the bytes and the digest."""
        started = await self._http.post(f"/v2/{name}/blobs/uploads/")
        _expect(started, 202, f"start upload of {digest}")
        location = started.headers.get("Location", "")
        url = self._http.base_url.join(location).copy_merge_params({"digest": digest})
        done = await self._http.put(
            url,
            content=chunks,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
        )
        _expect(done, 201, f"upload of {digest}")

    async def put_manifest(self, name: str, reference: str, body: bytes, media_type: str) -> str:
        response = await self._http.put(
            f"/v2/{name}/manifests/{reference}", content=body, headers={"Content-Type": media_type}
        )
        _expect(response, 201, f"PUT manifest {name}:{reference}")
        return str(response.headers.get("Docker-Content-Digest", ""))

    async def manifest_digest(self, name: str, reference: str) -> str | None:
        response = await self._http.head(
            f"/v2/{name}/manifests/{reference}", headers={"Accept": MANIFEST_ACCEPT}
        )
        if not _found(response, 200, f"HEAD manifest {name}:{reference}"):
            return None
        found = response.headers.get("Docker-Content-Digest")
        return str(found) if found else None

    async def delete_manifest(self, name: str, digest: str) -> bool:
        """Delete by digest; False when the registry did not have it (already deleted)."""
        response = await self._http.delete(f"/v2/{name}/manifests/{digest}")
        return _found(response, 202, f"DELETE manifest {name}@{digest}")


def _found(response: httpx.Response, status: int, what: str) -> bool:
    """False on 404, True on `status`, RegistryError otherwise."""
    if response.status_code == 404:
        return False
    _expect(response, status, what)
    return True


def _expect(response: httpx.Response, status: int, what: str) -> None:
    if response.status_code == status or (status == 201 and response.status_code == 200):
        return
    try:
        text = response.text[:300]
    except httpx.ResponseNotRead:
        text = ""
    raise RegistryError(detail=f"{what}: registry answered {response.status_code} {text}".strip())
