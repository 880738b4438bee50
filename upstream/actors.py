"""Who acts on a record: a person, or the system itself.

Who acts (`actor`), the same in every service:
- `actor=None` is the system itself: a sync, the sweep, the worker, a management command. It
  passes no permission check and puts no person on the record (call, job, batch). Only code
  that really runs without a person may pass None; a service that takes `actor: User | None`
  says so in its signature.
- A person is a User (`actor: User`): every user-facing service requires one and checks its
  permission with `actor_require`, which refuses None too, so a missing actor is never mistaken
  for the system.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied

User = AbstractBaseUser | AnonymousUser


def actor_allowed(actor: User | None, perm: str) -> bool:
    """May this actor do it? The system (None) always may; a person needs the permission."""
    return actor is None or actor.has_perm(perm)


def actor_require(actor: User, perm: str, message: str) -> None:
    """A user-facing service's check: a person holding `perm`. None is refused, not the system."""
    if actor is None or not actor.has_perm(perm):
        raise PermissionDenied(message)


def actor_id_of(actor: User | None) -> int | None:
    """The person to put on a record; None for the system (or an anonymous user)."""
    return actor.pk if actor is not None and actor.is_authenticated else None
