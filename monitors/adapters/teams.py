"""Teams Workflows webhooks over HTTPS with requests.

A 2xx means the flow accepted the message, not that anyone saw it; the caller keeps its own
delivery log. Errors never carry the URL: its query string is the webhook's secret signature.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import requests

    from monitors.settings import Webhook

MIN_INTERVAL_S = 0.25  # Workflows webhooks accept about 4 requests per second


@dataclass(frozen=True, slots=True, kw_only=True)
class PostResult:
    delivered: bool
    status: int | None = None
    retry_after_s: float | None = None
    error: str | None = None


class TeamsPoster(Protocol):
    def post(self, webhook: Webhook, payload: dict[str, Any]) -> PostResult: ...


class WebhookPoster:
    def __init__(
        self,
        session: requests.Session,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._session = session
        self._timeout_s = timeout_s
        self._clock = clock
        self._sleep = sleep
        self._last_post: dict[str, float] = {}
        self.posts = 0

    def post(self, webhook: Webhook, payload: dict[str, Any]) -> PostResult:
        import requests

        self._pace(webhook.name)
        self.posts += 1
        try:
            response = self._session.post(
                webhook.url,
                data=json.dumps(payload).encode(),
                headers={"Content-Type": "application/json"},
                timeout=self._timeout_s,
                allow_redirects=False,  # a redirect could carry the signed URL elsewhere
            )
        except requests.RequestException as error:
            return PostResult(delivered=False, error=f"{type(error).__name__} posting to {webhook.host}")
        if 200 <= response.status_code < 300:
            return PostResult(delivered=True, status=response.status_code)
        return PostResult(
            delivered=False,
            status=response.status_code,
            retry_after_s=_retry_after(response.headers.get("Retry-After")),
            error=f"HTTP {response.status_code} from {webhook.host}",
        )

    def _pace(self, key: str) -> None:
        last = self._last_post.get(key)
        if last is not None:
            wait = MIN_INTERVAL_S - (self._clock() - last)
            if wait > 0:
                self._sleep(wait)
        self._last_post[key] = self._clock()


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP-date; the caller's own backoff applies
