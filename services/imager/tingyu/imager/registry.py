"""A thin client of the Registry HTTP API V2 (Distribution, Harbor, ACR): blobs, manifests, auth.

Auth follows the `WWW-Authenticate` challenge: `Basic` answers with the configured user and
password; `Bearer` fetches a token from the challenge's realm for its service and scope (with
the same credentials, when set). Tokens are kept per scope until shortly before they expire, so a
request whose scope already has one goes out authorised at once (a streamed body can't be sent
twice).

The imager asks the realm rather than minting tokens with the platform's signing key: the key
stays with the API alone, and the same code works against Harbor or ACR, whose keys we never hold.
"""

from __future__ import annotations

import base64
import re
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator

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
_REPOSITORY = re.compile(r"^/v2/(.+)/(?:blobs|manifests|tags)/")
DEFAULT_TOKEN_S = 60.0  # a token answer without `expires_in` (the token specification's default)
RENEW_BEFORE_S = 10.0  # a token this close to its end is not used again


def normal_scope(scope: str) -> str:
    """A scope with its actions sorted: the registry names them in any order (`push,pull`)."""
    head, colon, actions = scope.rpartition(":")
    if not colon or not head:
        return scope
    return f"{head}:{','.join(sorted(set(actions.split(','))))}"


def scope_of(method: str, path: str) -> str:
    """The scope the registry will challenge a request for, as Distribution names it: reads pull,
    uploads and manifest writes pull and push, deletes delete; "" for /v2/ itself."""
    found = _REPOSITORY.match(path)
    if not found:
        return ""
    if method in ("GET", "HEAD"):
        actions = "pull"
    elif method == "DELETE":
        actions = "delete"
    else:
        actions = "pull,push"
    return f"repository:{found.group(1)}:{actions}"


class ChallengeAuth(httpx.Auth):
    """Answers 401 challenges with Basic credentials or a Bearer token from the realm."""

    def __init__(
        self,
        user: str,
        password: str,
        tokens: httpx.AsyncClient,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.user = user
        self.password = password
        self.tokens = tokens
        self.clock = clock
        self.basic = ""  # set once the registry asked for Basic credentials
        self.bearer: dict[str, tuple[str, float]] = {}  # scope -> (header, usable until)

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("the registry client is asynchronous")

    def known(self, scope: str) -> str:
        """The header already held for `scope` ("" when none is, or it is about to expire)."""
        if self.basic:
            return self.basic
        header, until = self.bearer.get(scope, ("", 0.0))
        return header if header and self.clock() < until else ""

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        header = self.known(scope_of(request.method, request.url.path))
        if header:
            request.headers["Authorization"] = header
        response = yield request
        challenge = response.headers.get("WWW-Authenticate", "")
        if response.status_code != 401 or not challenge:
            return
        request.headers["Authorization"] = await self._answer(challenge)
        yield request

    async def _answer(self, challenge: str) -> str:
        scheme, _, rest = challenge.partition(" ")
        if scheme.lower() == "basic":
            self.basic = basic_header(self.user, self.password)
            return self.basic
        if scheme.lower() != "bearer":
            raise RegistryError(detail=f"unsupported registry auth scheme {scheme!r}")
        params = dict(_PARAM.findall(rest))
        realm = params.pop("realm", "")
        if not realm:
            raise RegistryError(detail="the registry's Bearer challenge names no realm")
        auth = httpx.BasicAuth(self.user, self.password) if self.user else None
        scope = normal_scope(params.get("scope", ""))
        query = {k: v for k, v in params.items() if k == "service"} | ({"scope": scope} if scope else {})
        asked = self.clock()
        answer = await self.tokens.get(realm, params=query, auth=auth)
        if answer.status_code != 200:
            raise RegistryError(detail=f"token request to {realm} answered {answer.status_code}")
        body = answer.json()
        token = body.get("token") or body.get("access_token")
        if not token:
            raise RegistryError(detail=f"token request to {realm} returned no token")
        lasts = float(body.get("expires_in") or DEFAULT_TOKEN_S)
        header = f"Bearer {token}"
        self.bearer[scope] = (header, asked + lasts - min(RENEW_BEFORE_S, lasts / 2))
        return header


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
