"""Webhooks as CallRail stores them: URLs inside the `config` of a company's Webhooks integration.

The spec speaks of webhook objects with events; CallRail has one integration per company whose
config maps each event key to a list of URLs. These pure functions translate between the two.
"""

from __future__ import annotations

from typing import Any

from callrail_sync.callrail.models import Integration

EVENT_KEYS: dict[str, str] = {
    "call.received": "pre_call_webhook",
    "call.completed": "post_call_webhook",
    "call.updated": "updated_call_webhook",
    "form.submission": "form_captured_webhook",
}
KEY_EVENTS: dict[str, str] = {key: event for event, key in EVENT_KEYS.items()}
DEFAULT_EVENTS: tuple[str, ...] = ("call.completed", "call.received")
MOVE_RECEIVER = (
    "This service's own receiver keeps its URL: create a webhook with the new URL instead "
    "(or one without a URL to receive the events here)."
)
RECEIVER_EVENTS: tuple[str, ...] = tuple(EVENT_KEYS)
"""What our own receiver is registered for when a webhook is made without a URL."""


def config_keys(events: list[str]) -> list[str]:
    return [EVENT_KEYS[e] for e in events]


def with_url(config: dict[str, Any], url: str, keys: list[str]) -> dict[str, list[str]]:
    """A copy of `config` with `url` added under each of `keys` (no duplicates)."""
    out = {k: list(v) if isinstance(v, list) else [v] for k, v in config.items()}
    for key in keys:
        urls = out.setdefault(key, [])
        if url not in urls:
            urls.append(url)
    return out


def replace_url(config: dict[str, Any], old: str, new: str) -> dict[str, list[str]]:
    """A copy of `config` with every occurrence of `old` replaced by `new`."""
    out: dict[str, list[str]] = {}
    for key, value in config.items():
        urls = value if isinstance(value, list) else [value]
        replaced = [new if u == old else u for u in urls]
        out[key] = list(dict.fromkeys(replaced))
    return out


def urls_in(integration: Integration, receiver: str | None = None) -> dict[str, list[str]]:
    """Each URL of the integration, with the config keys that deliver to it, in config order.
    Our `receiver`'s URLs (one per key, each naming its event) count as that one URL."""
    found: dict[str, list[str]] = {}
    for key in integration.config:
        for url in integration.urls_for(key):
            if receiver is not None and url == event_url(receiver, key):
                url = receiver
            found.setdefault(url, []).append(key)
    return found


def event_url(receiver: str, key: str) -> str:
    """Our receiver's URL for one config key: CallRail's deliveries do not say which event they
    are, so the URL does (`?event=post_call` for `post_call_webhook`)."""
    return f"{receiver}?event={key.removesuffix('_webhook')}"


def with_receiver(config: dict[str, Any], receiver: str, keys: list[str]) -> dict[str, list[str]]:
    """A copy of `config` with our receiver under each of `keys`, by its URL for that key."""
    out = with_url(config, receiver, [])
    for key in keys:
        out = with_url(out, event_url(receiver, key), [key])
    return out


def has_receiver(integration: Integration, receiver: str, keys: list[str]) -> bool:
    return all(event_url(receiver, k) in integration.urls_for(k) for k in keys)


def events_for(keys: list[str]) -> list[str]:
    """Spec event names for config keys; keys the spec has no name for are shown as they are."""
    return [KEY_EVENTS.get(k, k) for k in keys]


def has_url(integration: Integration, url: str, keys: list[str]) -> bool:
    return all(url in integration.urls_for(k) for k in keys)
