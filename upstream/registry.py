"""What each vertical brings to the shared layer, registered from its `AppConfig.ready()`.

The shared layer never imports a vertical (`make lint` runs import-linter's contracts); it reads
what the verticals registered here instead, the way Django's admin reads what each app
registers with `admin.site`. Push kinds register themselves in `upstream.pushes.kinds`.

- `register_upstream`: an upstream, the setting whose URL says sandbox or live, its full sync;
- `register_mirrored`: a mirrored model, its upstream, its drift rules and personal fields;
- `register_chart` / `register_total`: the dashboard's figures about a vertical's records;
- `register_remask`: a step of `manage.py mask_personal_data` for texts a vertical wrote;
- `hold_back_permission`: a push permission the operators group does not get by default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from django.db.models import Model

from upstream.calls.redaction import Kind

if TYPE_CHECKING:
    from upstream.console.dashboard import Chart
    from upstream.history.sync import SyncCounts


@dataclass(frozen=True)
class Upstream:
    service: str
    # The setting holding the upstream's base URL: pointing at SANDBOX_URL means "sandbox".
    base_url_setting: str
    # The full sync into the mirror (the command, the periodic sync): `sync(**kwargs)`.
    sync: Callable[..., SyncCounts]


@dataclass(frozen=True)
class Mirrored:
    """A mirrored model and the rules the shared layer applies to it."""

    model: type[Model]
    service: str
    # Fields only staff change: a change the upstream made to one is drift ("outside change").
    staff_only: frozenset[str] = frozenset()
    # The upstream's own lifecycle, per field {(old, new), ...}: on the timeline, never drift.
    lifecycle: Mapping[str, frozenset[tuple[Any, Any]]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    # A record the upstream no longer lists is drift ("missing"), not just deleted.
    vanishing_is_drift: bool = False
    # Personal data: masked for staff without `security.view_personal_data`.
    personal: Mapping[str, Kind] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def label(self) -> str:
        return self.model._meta.label_lower

    @property
    def drift_tracked(self) -> bool:
        return bool(self.staff_only or self.vanishing_is_drift)


@dataclass(frozen=True)
class DashboardChart:
    key: str
    # Shown to staff who hold this permission.
    permission: str
    draw: Callable[[datetime], Chart]


_upstreams: dict[str, Upstream] = {}
_mirrored: dict[str, Mirrored] = {}
_charts: dict[str, DashboardChart] = {}
_totals: dict[str, Callable[[], Any]] = {}
_remasks: dict[str, Callable[[int], int]] = {}
_held_back: set[str] = set()


def register_upstream(service: str, *, base_url_setting: str, sync: Callable[..., Any]) -> None:
    _upstreams[service] = Upstream(service, base_url_setting, sync)


def register_mirrored(model: type[Model], *, service: str, **rules: Any) -> None:
    entry = Mirrored(model=model, service=service, **rules)
    _mirrored[entry.label] = entry


def register_chart(key: str, *, permission: str, draw: Callable[[datetime], Chart]) -> None:
    _charts[key] = DashboardChart(key, permission, draw)


def register_total(key: str, compute: Callable[[], Any]) -> None:
    """A whole-table total the sweep recomputes, so that no page view runs its GROUP BY."""
    _totals[key] = compute


def register_remask(name: str, remask: Callable[[int], int]) -> None:
    """`remask(batch) -> rows changed`: masks personal data a vertical stored in clear before."""
    _remasks[name] = remask


def hold_back_permission(permission: str) -> None:
    """A push permission ("app.codename") the operators group does not get by default."""
    _held_back.add(permission)


def held_back_permissions() -> frozenset[str]:
    return frozenset(_held_back)


def upstreams() -> dict[str, Upstream]:
    return dict(_upstreams)  # in the order the apps are installed


def upstream(service: str) -> Upstream:
    try:
        return _upstreams[service]
    except KeyError:
        raise LookupError(f"no upstream registered as {service!r}") from None


def mirrored(model_or_label: type[Model] | str) -> Mirrored | None:
    label = model_or_label if isinstance(model_or_label, str) else model_or_label._meta.label_lower
    return _mirrored.get(label)


def mirrored_models() -> list[Mirrored]:
    return list(_mirrored.values())


def personal_fields(model_or_label: type[Model] | str) -> Mapping[str, Kind]:
    entry = mirrored(model_or_label)
    return entry.personal if entry is not None else MappingProxyType({})


def charts() -> list[DashboardChart]:
    return list(_charts.values())


def totals() -> dict[str, Callable[[], Any]]:
    return dict(_totals)


def remasks() -> dict[str, Callable[[int], int]]:
    return dict(_remasks)
