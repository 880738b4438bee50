"""Customers' personal data in the mirror, shown unmasked only with its own permission (KVKK).

The mirror keeps what staff need (names, e-mails, phone numbers: upstream.calls.redaction
upstream.registry). Staff without `security.view_personal_data` see them masked ("Ze***
Ka**", "z***@example.com", "532***4567") in every admin list and record page, in the CSV
exports and in the API. docs/decisions/011-personal-data.md says why and how.

- **Every request** (`PersonalDataMasking` middleware, the one central place; it fails
  closed): whatever its method, view or path, every mirror row loaded while it runs is masked
  as it is loaded (post_init) for a reader without the permission, the rows of a list, a
  record's page, an API answer and the rows they reach through relations alike. Who reads is
  asked when a row loads, after the API authenticated its token. A masked row refuses to be
  saved, so a masked value can never overwrite the real one; a push's write-back runs
  `unmasked()`.
- **Exports** (streamed after the request) mask each personal column (`mask_columns`); the
  API's serializers mask their personal fields too (`PersonalDataSerializerMixin`).
"""

from __future__ import annotations

import contextvars
import copy
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.db.models.signals import post_init, pre_save
from django.http import HttpRequest, HttpResponse

from upstream.calls.redaction import Kind, mask_value
from upstream.registry import mirrored_models
from upstream.registry import personal_fields as registered_personal_fields

PERM_PERSONAL_DATA = "security.view_personal_data"
# The attribute a masked row carries; such a row is never saved.
MASKED = "_personal_data_masked"


class _RequestScope:
    """Masking for one request, decided when a row is loaded: by then the API has authenticated
    its token (DRF sets the user on the request), so every view, method and path is covered
    from here, whether the reader signed in with a session, a token or not at all."""

    def __init__(self, request: HttpRequest) -> None:
        self.request = request
        self._decided: tuple[int, bool] | None = None

    def masks(self) -> bool:
        user = getattr(self.request, "user", None)
        if self._decided is None or self._decided[0] != id(user):
            self._decided = (id(user), not sees_personal_data(user))
        return self._decided[1]


# True: mask; False: rows as they are; a request's scope: mask unless its user may see them.
_masking: contextvars.ContextVar[bool | _RequestScope] = contextvars.ContextVar(
    "personal_masking", default=False
)


def sees_personal_data(user: Any) -> bool:
    """May this user see customers' personal data unmasked?"""
    return bool(user is not None and user.is_authenticated and user.has_perm(PERM_PERSONAL_DATA))


def personal_fields(model: type[models.Model] | models.Model) -> Mapping[str, Kind]:
    # What each vertical registered (upstream.registry.register_mirrored).
    return registered_personal_fields(model._meta.label_lower)


def mask_instance(obj: models.Model) -> models.Model:
    """Mask `obj`'s loaded personal fields in place and mark it unsaveable."""
    fields = personal_fields(obj)
    for name, kind in fields.items():
        if name in obj.__dict__:  # a deferred field stays deferred
            obj.__dict__[name] = mask_value(kind, obj.__dict__[name])
    if fields:
        setattr(obj, MASKED, True)
    return obj


def masked_copy(obj: models.Model) -> models.Model:
    """A copy of `obj` with its personal fields masked; `obj` stays as it is."""
    return mask_instance(copy.copy(obj))


def masked_str(obj: models.Model) -> str:
    """`str(obj)` with its personal fields masked, for texts every viewer reads (job titles,
    the call log's targets)."""
    return str(masked_copy(obj))


@contextmanager
def masking(user: Any) -> Iterator[bool]:
    """Mask every mirror row loaded inside the block, unless `user` may see them unmasked."""
    if sees_personal_data(user):
        yield False
        return
    token = _masking.set(True)
    try:
        yield True
    finally:
        _masking.reset(token)


def shown_masked(request: HttpRequest, view: Callable[[], HttpResponse]) -> HttpResponse:
    """`view()`'s page, rendered with masking on for a user without the permission: for views
    that change nothing yet answer a POST, which the middleware leaves unmasked."""
    with masking(request.user):
        response = view()
        if callable(getattr(response, "render", None)):
            response.render()  # inside the block: a TemplateResponse loads its rows as it renders
    return response


@contextmanager
def unmasked() -> Iterator[None]:
    """Rows as they are inside the block, whoever the request's user is: for code that writes
    the mirror back (a push's apply); a masked row refuses to be saved otherwise."""
    token = _masking.set(False)
    try:
        yield
    finally:
        _masking.reset(token)


def is_masking() -> bool:
    scope = _masking.get()
    return scope.masks() if isinstance(scope, _RequestScope) else bool(scope)


def _on_load(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    if is_masking():
        mask_instance(instance)


def _refuse_masked(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    if getattr(instance, MASKED, False):
        raise RuntimeError(
            f"{sender._meta.label} #{instance.pk} was loaded with its personal data masked "
            "and cannot be saved."
        )


def connect() -> None:
    # The verticals registered their models in their ready(); this app is installed after them.
    for entry in mirrored_models():
        if not entry.personal:
            continue
        model, label = entry.model, entry.label
        post_init.connect(_on_load, sender=model, dispatch_uid=f"security.mask.{label}")
        pre_save.connect(_refuse_masked, sender=model, dispatch_uid=f"security.guard.{label}")


class PersonalDataMasking:
    """Fails closed: every request, whatever its method, view or path (admin, API, a page added
    later), runs with masking on for a reader without the permission. Rows loaded while it runs
    are masked as they load (post_init); the page is rendered inside, so what it shows is
    masked. Who the reader is is asked when a row loads (`_RequestScope`), after the API has
    authenticated its token. A masked row refuses to be saved, so a masked value never
    overwrites a real one; code that writes the mirror back runs `unmasked()`."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _masking.set(_RequestScope(request))
        try:
            return self.get_response(request)
        finally:
            _masking.reset(token)


def column_kind(model: type[models.Model], path: str) -> Kind | None:
    """The kind of personal data an export column holds ("subscription__name_surname")."""
    *relations, name = path.split("__")
    try:
        for relation in relations:
            model = model._meta.get_field(relation).related_model
    except (FieldDoesNotExist, AttributeError):  # not a field path: no mirror field
        return None
    if model is None:
        return None
    return personal_fields(model).get(name)


def mask_columns(
    model: type[models.Model], names: tuple[str, ...], user: Any
) -> Callable[[list[Any]], list[Any]]:
    """For an export of `names` columns: a function that masks a row's personal columns, or
    leaves it as it is for a user who may see them."""
    kinds = {i: column_kind(model, name) for i, name in enumerate(names)}
    kinds = {i: kind for i, kind in kinds.items() if kind is not None}
    if not kinds or sees_personal_data(user):
        return lambda row: row
    return lambda row: [mask_value(kinds[i], v) if i in kinds else v for i, v in enumerate(row)]


class PersonalDataSerializerMixin:
    """A ModelSerializer whose model's personal fields are masked for a requester without the
    permission (and when there is no request to tell)."""

    def to_representation(self, instance: Any) -> dict:
        data = super().to_representation(instance)
        request = self.context.get("request")
        user = getattr(request, "user", None)
        if sees_personal_data(user) or getattr(instance, MASKED, False):
            return data  # allowed, or masked as it was loaded
        for name, kind in personal_fields(self.Meta.model).items():
            if name in data:
                data[name] = mask_value(kind, data[name])
        return data
