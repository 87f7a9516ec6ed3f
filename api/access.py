"""Who may call ``/v1``: with an API key (``LLM_LAB_API_KEY`` or ``--api-key``) every request must carry
``Authorization: Bearer <key>``; without one the API answers this machine only (loopback clients), as the UI's
default address does, and tells anyone else how to open it."""
from __future__ import annotations

import hmac
import ipaddress

from starlette.requests import Request

from .errors import ApiError


def is_loopback(host: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and the test client's "testclient"/"localhost" names."""
    if not host:
        return False
    if host in ("localhost", "testclient"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def check_access(request: Request, api_key: str | None) -> None:
    """Raise the API's 401/403 answer unless ``request`` may use the API."""
    if api_key:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise ApiError(401, "This API needs a key: send the header 'Authorization: Bearer <key>' (the openai "
                                "client: api_key=...). The key is the app's LLM_LAB_API_KEY.",
                           code="missing_api_key")
        if not hmac.compare_digest(given.strip().encode(), api_key.encode()):
            raise ApiError(401, "Incorrect API key. Use the key the app was started with (LLM_LAB_API_KEY or "
                                "--api-key).", code="invalid_api_key")
        return
    client = request.client.host if request.client else None
    if not is_loopback(client):
        raise ApiError(403, "The API answers this machine only while no API key is set. Start the app with "
                            "LLM_LAB_API_KEY (or --api-key) to let other machines in with "
                            "'Authorization: Bearer <key>'.", code="api_key_required")
