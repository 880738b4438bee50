"""One meaning for `actor=None`: the system itself, never a person who forgot to log in."""

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied

from upstream.actors import actor_allowed, actor_id_of, actor_require

PERM = "subscriptions.push_invoice_status"


def test_the_system_passes_where_a_person_needs_the_permission(db, operator, viewer):
    assert actor_allowed(None, PERM)
    assert actor_allowed(operator, PERM)
    assert not actor_allowed(viewer, PERM)


def test_a_user_facing_check_refuses_a_missing_actor(db, operator, viewer):
    actor_require(operator, PERM, "no")
    for actor in (None, viewer, AnonymousUser()):
        with pytest.raises(PermissionDenied, match="no"):
            actor_require(actor, PERM, "no")


def test_only_a_person_is_put_on_the_record(db, operator):
    assert actor_id_of(operator) == operator.pk
    assert actor_id_of(None) is None
    assert actor_id_of(AnonymousUser()) is None
