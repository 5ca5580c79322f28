"""Cross-site request forgery: every form the dashboard serves carries a token it checks.

The dashboard's forms are POSTs (``/ui/login``, ``/ui/logout``). Two checks,
both required on every POST:

1. **Origin**: a browser names the page a POST came from (``Origin``, else
   ``Referer``); one naming another host is refused. A request with neither
   header is not from a browser form and passes to the next check.
2. **Double-submit token** (OWASP's signed variant): ``GET`` of any page sets
   ``meterline_csrf=<nonce>`` (HttpOnly, SameSite=Strict, ``/ui``) and each
   form carries ``csrf = HMAC(secret, nonce)``. A POST whose field is not the
   MAC of its cookie's nonce is refused (``hmac.compare_digest``). A page on
   another site can neither read the cookie nor compute the MAC.

The session cookie is SameSite=Strict as well, so a cross-site POST does not
even carry a session; the token also stops *login* forgery (signing a victim
in as the attacker), which SameSite alone does not.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlparse

from fastapi import Request
from fastapi.responses import Response

CSRF_COOKIE = "meterline_csrf"
CSRF_FIELD = "csrf"


class CsrfRefused(Exception):
    """A POST without a valid token or from another origin; the message says which."""


class CsrfGuard:
    """Issues and checks the form token; ``secret`` lives for the process (as the session key)."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def _mac(self, nonce: str) -> str:
        return hmac.new(self._secret, nonce.encode(), hashlib.sha256).hexdigest()

    def token_for(self, request: Request) -> tuple[str, str]:
        """(nonce to set as the cookie, token for the form); reuses the request's nonce."""
        nonce = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(16)
        return nonce, self._mac(nonce)

    @staticmethod
    def set_cookie(response: Response, request: Request, nonce: str) -> None:
        response.set_cookie(CSRF_COOKIE, nonce, path="/ui", httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")

    def check(self, request: Request, field: str) -> None:
        """``CsrfRefused`` unless the POST comes from this host with the cookie's token."""
        claimed = request.headers.get("origin") or request.headers.get("referer")
        if claimed and claimed != "null":
            if urlparse(claimed).netloc != request.headers.get("host", ""):
                raise CsrfRefused("This form was posted from another site.")
        elif claimed == "null":
            raise CsrfRefused("This form was posted from an opaque origin.")
        nonce = request.cookies.get(CSRF_COOKIE, "")
        if not nonce or not hmac.compare_digest(field.encode(), self._mac(nonce).encode()):
            raise CsrfRefused("The form's security token is missing or stale; reload the page "
                              "and try again.")
