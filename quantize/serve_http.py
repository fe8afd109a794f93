"""The HTTP edge of `onboard serve`: OpenAI-style errors and the checks every request passes
before FastAPI reads or parses it (Host allowlist, API key, body size).

The checks are one pure ASGI middleware, `Guard`, so that a refused request costs no parsing:
- Host allowlist (DNS rebinding): a web page on another site can make a browser send requests to
  127.0.0.1 by pointing its own name at it, but its Host header still names that site. On a
  loopback bind without an API key only loopback names (plus --allow-host) are answered (421).
- API key: `Authorization: Bearer KEY` compared in constant time, required on every path but
  /health, including /docs, /redoc and /openapi.json (401).
- Body size: a Content-Length over the limit is refused before the body is read; a chunked body
  is counted while it is read and refused as soon as it passes the limit (413).
"""
from __future__ import annotations

import hmac
import ipaddress

from starlette.datastructures import Headers
from starlette.responses import JSONResponse

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
OPEN_PATHS = ("/health",)  # answered without the API key (liveness checks)
BODY_METHODS = ("POST", "PUT", "PATCH")


class RequestError(Exception):
    """A client mistake (or a refusal): becomes an OpenAI-style error body with `status`."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None, status: int = 400):
        super().__init__(message)
        self.message, self.param, self.code, self.status = message, param, code, status


ERROR_TYPES = {401: "authentication_error", 413: "invalid_request_error", 421: "invalid_request_error",
               500: "server_error", 503: "server_busy", 504: "timeout_error"}


def error_body(message: str, param: str | None = None, code: str | None = None,
               kind: str = "invalid_request_error") -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_response(e: RequestError) -> JSONResponse:
    kind = ERROR_TYPES.get(e.status, "invalid_request_error")
    return JSONResponse(error_body(e.message, e.param, e.code, kind), status_code=e.status)


def validation_message(errors: list[dict]) -> tuple[str, str | None]:
    """pydantic errors -> (one readable line, the offending top-level field)."""
    if any(e.get("type") == "json_invalid" for e in errors):
        return "request body is not valid JSON", None
    problems, param = [], None
    for e in errors:
        loc = [p for p in e.get("loc", ()) if p != "body"]
        param = param or (str(loc[0]) if loc else None)
        if len(loc) >= 2 and loc[0] == "messages" and isinstance(loc[1], int):
            line = (f"messages[{loc[1]}] must be an object with a role (system, user or assistant) "
                    "and string content")
        else:
            line = f"{'.'.join(map(str, loc))}: {e.get('msg')}" if loc else str(e.get("msg"))
        if line not in problems:
            problems.append(line)
    return "invalid request: " + "; ".join(problems[:3]), param


# --- hosts -------------------------------------------------------------------------------
def is_loopback(host: str) -> bool:
    """True for names and addresses only this machine can reach: localhost, 127.0.0.0/8, ::1."""
    host = host.strip().lower().removeprefix("[").removesuffix("]")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_warning(host: str, api_key: str | None) -> str | None:
    """What to tell the user about binding `host`, or None when it is loopback only."""
    if is_loopback(host):
        return None
    return (f"warning: listening on {host}: other machines can reach this server"
            + ("" if api_key else " and no --api-key is set"))


def host_allowlist(bind_host: str, extra: tuple[str, ...] = ()) -> set[str] | None:
    """Host header names accepted on a keyless server bound to `bind_host`; None = no check
    (a non-loopback bind is reachable by name from the network anyway, and warned about)."""
    if not is_loopback(bind_host):
        return None
    bind = bind_host.lower()
    bind = f"[{bind}]" if ":" in bind and not bind.startswith("[") else bind
    return {*LOOPBACK_NAMES, bind, *(h.lower() for h in extra)}


def host_name(header: str) -> str:
    """Host header without its port: 'localhost:8000' -> 'localhost', '[::1]:8000' -> '[::1]'."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[: header.find("]") + 1] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def key_matches(authorization: str, api_key: str) -> bool:
    """Constant-time compare of the Authorization header with `Bearer KEY` (as bytes, so that
    a non-ASCII header or key is a mismatch, not an error)."""
    # starlette decodes header bytes as latin-1: encoding back gives the bytes that were sent
    return hmac.compare_digest(authorization.encode("latin-1"), f"Bearer {api_key}".encode())


# --- the middleware ----------------------------------------------------------------------
class Guard:
    """Pure ASGI middleware in front of the app; `state` gives api_key, bind_host, allow_hosts
    and max_body_bytes (read per request, so a running server can be reconfigured)."""

    def __init__(self, app, state):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        try:
            self.check_headers(scope, headers)
            if scope["method"] in BODY_METHODS and self.state.max_body_bytes:
                receive = await self.read_body(headers, receive)
                if receive is None:  # client left before sending its body
                    return
        except RequestError as e:
            return await error_response(e)(scope, receive, send)
        await self.app(scope, receive, send)

    def check_headers(self, scope, headers: Headers) -> None:
        st = self.state
        if not st.api_key:
            allowed = host_allowlist(st.bind_host, tuple(st.allow_hosts))
            host = headers.get("host")
            if allowed is not None and host is not None and host_name(host) not in allowed:
                raise RequestError(f"Host {host!r} is not served here: use http://127.0.0.1 or http://localhost "
                                   "(this check stops DNS-rebinding web pages; --allow-host NAME adds a name)",
                                   code="invalid_host", status=421)
        elif scope["path"] not in OPEN_PATHS and not key_matches(headers.get("authorization", ""), st.api_key):
            raise RequestError("missing or wrong API key (Authorization: Bearer KEY)", code="invalid_api_key",
                               status=401)

    async def read_body(self, headers: Headers, receive):
        """The whole body (it is parsed whole anyway), refused once it passes the limit;
        returns a `receive` that replays it and then reports the client's disconnect."""
        limit = self.state.max_body_bytes
        too_big = RequestError(f"request body is larger than this server's limit of {limit:,} bytes "
                               "(onboard serve --max-body-mb)", code="request_too_large", status=413)
        declared = headers.get("content-length")
        if declared is not None and (not declared.strip().isdigit() or int(declared) > limit):
            raise too_big
        parts, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            size += len(message.get("body", b""))
            if size > limit:
                raise too_big
            parts.append(message.get("body", b""))
            more = message.get("more_body", False)
        pending = [{"type": "http.request", "body": b"".join(parts), "more_body": False}]

        async def replay():
            return pending.pop() if pending else await receive()

        return replay
