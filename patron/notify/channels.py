"""Delivery channels: how one rendered outbox message leaves the building.

Each ``send_*`` function either returns (delivered) or raises ``DeliveryFailed`` with a
message that carries no personal data (it ends up in ``OutboxMessage.last_error``, which
operators read). The outbox service decides about retries; channels never retry.
"""

from __future__ import annotations

import http.client
import json
import smtplib
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from django.conf import settings
from django.core.mail import EmailMessage

from patron.core import clock
from patron.notify import webhooks


class DeliveryFailed(Exception):
    """A delivery attempt failed; worth retrying later. The message is safe to store."""


class DeliveryAbandoned(DeliveryFailed):
    """A failure no retry can fix (the webhook endpoint is gone): the message dies at once."""


# --- SMS ------------------------------------------------------------------------------


def send_sms(*, to: str, template: str, text: str) -> None:
    """Hand one SMS to the configured backend (``PATRON_SMS["BACKEND"]``: file or http)."""
    backend = settings.PATRON_SMS.get("BACKEND", "file")
    if backend == "file":
        _sms_to_file(to=to, template=template, text=text)
    elif backend == "http":
        _sms_to_http(to=to, template=template, text=text)
    else:
        raise DeliveryFailed(f"unknown SMS backend {backend!r}")


def _sms_to_file(*, to: str, template: str, text: str) -> None:
    """Development/test gateway: one JSON object per line, appended (tests read it back)."""
    path = Path(settings.PATRON_SMS["FILE"])
    line = json.dumps(
        {
            "to": to,
            "template": template,
            "text": text,
            "sent_at": clock.now().isoformat(timespec="seconds"),
        },
        ensure_ascii=False,
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # One write() of a whole line in append mode: concurrent workers never interleave
        # partial lines on a local file system.
        with path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
    except OSError as exc:
        raise DeliveryFailed(f"SMS file not writable ({type(exc).__name__})") from None


def _sms_to_http(*, to: str, template: str, text: str) -> None:
    """A real gateway: POST JSON with a bearer token; anything but 2xx is a failure."""
    url = settings.PATRON_SMS.get("HTTP_URL")
    if not url:
        raise DeliveryFailed("SMS gateway URL is not configured")
    body = json.dumps({"to": to, "template": template, "text": text}).encode()
    request = urllib.request.Request(  # noqa: S310 (the operator configures the URL)
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    token = settings.PATRON_SMS.get("HTTP_TOKEN")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    timeout = settings.PATRON_SMS.get("TIMEOUT") or 5
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            status = response.status
    except urllib.error.HTTPError as exc:
        raise DeliveryFailed(f"SMS gateway answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        # The reason text can name the host, never the recipient: still, keep only the type.
        raise DeliveryFailed(f"SMS gateway unreachable ({type(exc).__name__})") from None
    if not 200 <= status < 300:
        raise DeliveryFailed(f"SMS gateway answered HTTP {status}")


# --- Email ----------------------------------------------------------------------------


def send_email(*, to: str, subject: str, body: str) -> None:
    """Send through Django's ``EMAIL_BACKEND`` (file in development, SMTP in production)."""
    message = EmailMessage(
        subject=subject, body=body, from_email=settings.DEFAULT_FROM_EMAIL, to=[to]
    )
    try:
        sent = message.send(fail_silently=False)
    except (smtplib.SMTPException, OSError) as exc:
        # SMTPRecipientsRefused and friends quote the address: store the type only.
        raise DeliveryFailed(f"email not accepted ({type(exc).__name__})") from None
    if sent != 1:
        raise DeliveryFailed("email backend sent nothing")


# --- Platform webhooks (NOTE-2) -------------------------------------------------------


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer other than 2xx: a failure, never a re-sent (or GET) request."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None


_webhook_opener = urllib.request.build_opener(_NoRedirects)


def _webhook_timeout() -> float:
    return float(getattr(settings, "PATRON_WEBHOOK_TIMEOUT_SECONDS", webhooks.TIMEOUT_SECONDS))


def send_webhook(*, url: str, secret: str, event: str, body: str) -> None:
    """POST one signed event; 2xx within the timeout (10 s) is delivered, anything else fails.

    The signature is made now, with this attempt's time, so a retry hours later still
    passes the receiver's freshness check. Errors name the status or the exception type,
    never the URL or the payload.
    """
    if urllib.parse.urlsplit(url).scheme.lower() not in ("http", "https"):
        raise DeliveryAbandoned("webhook URL scheme not allowed")
    data = body.encode("utf-8")
    headers = webhooks.request_headers(secret, event, data, timestamp=int(clock.now().timestamp()))
    request = urllib.request.Request(url, data=data, method="POST", headers=headers)  # noqa: S310
    try:
        with _webhook_opener.open(request, timeout=_webhook_timeout()) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        exc.close()
        raise DeliveryFailed(f"webhook endpoint answered HTTP {exc.code}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise DeliveryFailed("webhook endpoint timed out") from None
        reason = type(exc.reason).__name__ if isinstance(exc.reason, BaseException) else "URLError"
        raise DeliveryFailed(f"webhook endpoint unreachable ({reason})") from None
    except TimeoutError:
        raise DeliveryFailed("webhook endpoint timed out") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise DeliveryFailed(f"webhook endpoint unreachable ({type(exc).__name__})") from None
    if not 200 <= status < 300:
        raise DeliveryFailed(f"webhook endpoint answered HTTP {status}")
