"""A small client of the MESS service (torch-free; httpx only), used by the CLI.

Example::

    with MessClient("http://127.0.0.1:8000", token) as client:
        result = client.push("tiny.mess")      # {"id": ..., "created": True, ...}
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import httpx

from mess.fileio import atomic_write


class ClientError(Exception):
    """The server refused a request (or could not be reached): one readable message."""

    def __init__(
        self, message: str, status_code: int | None = None, body: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body or {}


class MessClient:
    """Calls the service's v1 API with a bearer token.

    Args:
        server: base URL, e.g. ``http://127.0.0.1:8000``.
        token: an API token.
        timeout: seconds for connect/read (uploads get ``upload_timeout``).
        upload_timeout: seconds for a bundle upload.
        transport: an httpx transport (tests swap it).
    """

    def __init__(
        self,
        server: str,
        token: str,
        *,
        timeout: float = 30.0,
        upload_timeout: float = 600.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.upload_timeout = upload_timeout
        self._http = httpx.Client(
            base_url=server.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> MessClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot reach {self._http.base_url}: {exc}") from None
        if response.status_code >= 400:
            body: dict[str, Any] = {}
            try:
                body = dict(response.json())
                detail = body.get("detail", response.text)
            except (ValueError, TypeError):
                detail = response.text
            raise ClientError(
                f"{method} {url} failed ({response.status_code}): {detail}",
                response.status_code,
                body,
            )
        return response

    def push(self, bundle: str | Path) -> dict[str, Any]:
        """Upload a bundle (streamed from disk).

        Args:
            bundle: the ``.mess`` file.

        Returns:
            The supernet summary with ``created`` (False when it was already stored).
        """
        path = Path(bundle)
        with open(path, "rb") as fh:
            response = self._request(
                "POST",
                "/v1/supernets",
                files={"bundle": (path.name, fh, "application/zip")},
                timeout=self.upload_timeout,
            )
        body: dict[str, Any] = response.json()
        body["created"] = response.status_code == 201
        return body

    def create_token(
        self, role: str, name: str, expires_at: dt.datetime | None = None
    ) -> dict[str, Any]:
        """Create a token (admin only); the result's ``token`` is shown this once.

        Args:
            role: admin, engineer or agent.
            name: a label.
            expires_at: optional aware expiry.

        Returns:
            The token record with its secret.
        """
        payload: dict[str, Any] = {"name": name, "role": role}
        if expires_at is not None:
            payload["expires_at"] = expires_at.isoformat()
        body: dict[str, Any] = self._request("POST", "/v1/tokens", json=payload).json()
        return body

    def get(self, path: str, **params: Any) -> Any:
        """GET a JSON resource, e.g. ``client.get("/v1/supernets")``."""
        return self._request("GET", path, params=params or None).json()

    def search(self, request: dict[str, Any], *, timeout: float = 3600.0) -> dict[str, Any]:
        """``POST /v1/search``, re-posted while the front is being computed or, with
        ``"verify": true``, the chosen configuration is being timed on the device (202).

        Returns:
            The answer: the fields of ``mess search --json`` plus ``configuration_id`` and
            ``verified`` (null unless asked for).
        """
        deadline = time.monotonic() + timeout
        while True:
            response = self._request("POST", "/v1/search", json=request)
            if response.status_code != 202:
                answer: dict[str, Any] = response.json()
                return answer
            if time.monotonic() > deadline:
                raise ClientError("the search did not finish in time", 202)
            time.sleep(1.0)

    def download(self, path: str, output: str | Path) -> int:
        """Stream a binary resource to ``output`` (atomically); returns its size."""
        output = Path(output)
        size = 0
        try:
            with self._http.stream("GET", path) as response:
                if response.status_code >= 400:
                    response.read()
                    self._raise(response, "GET", path)
                with atomic_write(output) as fh:
                    for chunk in response.iter_bytes():
                        fh.write(chunk)
                        size += len(chunk)
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot reach {self._http.base_url}: {exc}") from None
        return size

    def _raise(self, response: httpx.Response, method: str, url: str) -> None:
        try:
            body = dict(response.json())
        except (ValueError, TypeError):
            body = {"detail": response.text}
        raise ClientError(
            f"{method} {url} failed ({response.status_code}): {body.get('detail')}",
            response.status_code,
            body,
        )
