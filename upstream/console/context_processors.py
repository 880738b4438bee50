"""Template context for every page: which upstreams are the sandbox and which are live."""

from __future__ import annotations

from django.http import HttpRequest

from upstream.calls.modes import upstream_mode
from upstream.models import Service


def upstream_modes(request: HttpRequest) -> dict[str, object]:
    modes = [(label, upstream_mode(value)) for value, label in Service.choices]
    return {
        "upstream_modes": modes,
        "any_live": any(mode == "live" for _label, mode in modes),
    }
