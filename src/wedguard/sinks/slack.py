"""Slack incoming webhooks: a text fallback, Block Kit blocks, a colour by severity.

The payload is ``{"text": <one line>, "blocks": [<header>], "attachments": [{"color":
<hex>, "fallback": <one line>, "blocks": [<details>, <context>]}]}``: notifications and
screen readers use the text; the Slack client shows the header, then the details beside
a bar coloured by severity (blue LOW, yellow MEDIUM, orange HIGH, red CRITICAL, green
resolved, grey other events).

Examples:
    >>> from wedguard.policy.alerting import Alert, Severity
    >>> sink = SlackSink("https://hooks.slack.com/services/T000/B000/XXXX")
    >>> p = sink.payload(Alert("photos/halt", Severity.CRITICAL, "backup halted"))
    >>> p["text"], p["attachments"][0]["color"]
    ('[FIRING] CRITICAL backup halted', '#A30200')
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from wedguard.clock import Clock
from wedguard.errors import ConfigError
from wedguard.interfaces import Event
from wedguard.sinks._common import (
    NetworkSink,
    Secret,
    check_url,
    event_colour,
    event_lines,
    event_title,
    post,
    resolve_secret,
    url_hint,
)

__all__ = ["SlackSink"]

_MAX_SECTION = 2900  # Slack caps a section's text at 3000 characters


class SlackSink(NetworkSink):
    """Post events to a Slack incoming webhook.

    Args:
        url: the incoming-webhook URL (a secret).
        url_env: the environment variable holding the URL.
        channel: optional channel override (legacy webhooks only).
        username: optional user name override (legacy webhooks only).
        icon_emoji: optional icon override (legacy webhooks only).
        timeout: seconds for each attempt.
        name: how logs and the dispatcher's spool call this sink.
        queue_size: how many events ``emit`` may queue.
        max_attempts: give an emitted event up after this many tries (None: never).
        backoff: the first retry delay in seconds (doubles, with jitter).
        backoff_max: the longest retry delay.
        clock: where time comes from.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        url: str | Secret | None = None,
        *,
        url_env: str | None = None,
        channel: str | None = None,
        username: str | None = None,
        icon_emoji: str | None = None,
        timeout: float = 10.0,
        name: str = "slack",
        queue_size: int = 1000,
        max_attempts: int | None = None,
        backoff: float = 1.0,
        backoff_max: float = 300.0,
        clock: Clock | None = None,
    ) -> None:
        found = resolve_secret(url, url_env, field="url", env_field="url_env")
        if found is None:
            raise ConfigError("url", None, "a webhook URL, or url_env naming a variable")
        check_url(found, "url")
        self._url = found
        self._extra = {
            k: v
            for k, v in (("channel", channel), ("username", username), ("icon_emoji", icon_emoji))
            if v is not None
        }
        super().__init__(
            name=name,
            timeout=timeout,
            queue_size=queue_size,
            max_attempts=max_attempts,
            backoff=backoff,
            backoff_max=backoff_max,
            clock=clock,
        )

    def _secrets(self) -> Iterable[str]:
        yield self._url.reveal()

    def payload(self, event: Event) -> dict[str, Any]:
        """The JSON object posted for ``event``."""
        title = event_title(event)
        colour = event_colour(event)
        body = "\n".join(event_lines(event))
        if len(body) > _MAX_SECTION:
            body = body[:_MAX_SECTION] + "\n…"
        header = [{"type": "header", "text": {"type": "plain_text", "text": title[:150]}}]
        blocks: list[dict[str, Any]] = []
        if body:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"```{body}```"}})
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"wedguard · {event.kind}"}],
            }
        )
        return {
            "text": title,
            "blocks": header,
            "attachments": [{"color": colour, "fallback": title, "blocks": blocks}],
            **self._extra,
        }

    def _send(self, event: Event, msg_id: str) -> None:
        body = json.dumps(self.payload(event), ensure_ascii=False).encode("utf-8")
        post(
            self._url,
            body,
            {"Content-Type": "application/json; charset=utf-8"},
            timeout=self.timeout,
            clock=self._clock,
        )

    def __repr__(self) -> str:
        return f"SlackSink(name={self.name!r}, url={url_hint(self._url.reveal())!r})"
