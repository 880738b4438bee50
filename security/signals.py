"""Logins, logouts, failed logins and lockouts go to the security log (security/log.py)."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed

from .log import event

# Set on a request whose session the idle timeout ended (security.middleware).
IDLE_EXPIRED = "security_idle_expired"


def _username(user: Any) -> str | None:
    return user.get_username() if user is not None and hasattr(user, "get_username") else None


def logged_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    from .middleware import note_activity

    # Logging in is activity: the idle deadline starts here (and the first page writes nothing).
    if getattr(request, "session", None) is not None:
        note_activity(request.session)
    event("login", request, user=_username(user))


def logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    reason = "idle" if getattr(request, IDLE_EXPIRED, False) else "user"
    event("logout", request, user=_username(user), reason=reason)


def login_failed(sender: Any, credentials: dict, request: Any = None, **kwargs: Any) -> None:
    # Django has already replaced the password in `credentials`; only the username is logged.
    locked = bool(getattr(request, "axes_locked_out", False))
    event(
        "login_failed",
        request,
        level=logging.WARNING,
        user=credentials.get("username"),
        failures=getattr(request, "axes_failures_since_start", None),
        locked=str(locked).lower(),
    )


def locked_out(sender: Any, request: Any, username: str | None, ip_address: str, **kwargs: Any):
    from django.conf import settings

    minutes = settings.AXES_COOLOFF_TIME.total_seconds() / 60 if settings.AXES_COOLOFF_TIME else 0
    event(
        "lockout",
        request,
        level=logging.WARNING,
        user=username,
        failures=getattr(request, "axes_failures_since_start", None),
        cooloff_minutes=f"{minutes:g}",
    )


def password_saved(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    # set_password() keeps the new password on the instance until save() has run Django's
    # password_changed hooks, just after this signal: a save that changed the password.
    # Django's session auth hash follows the password, so every other session of the user ends
    # at its next request (the admin's own password change keeps the current one).
    if not created and getattr(instance, "_password", None) is not None:
        from .tokens import api_tokens_revoke_all

        event("password_changed", user=_username(instance))
        # API tokens are not sessions: they end here too (security/tokens.py).
        api_tokens_revoke_all(user=instance, reason="password_changed")


def connect() -> None:
    from axes.signals import user_locked_out
    from django.contrib.auth import get_user_model
    from django.db.models.signals import post_save

    post_save.connect(password_saved, sender=get_user_model(), dispatch_uid="security.password")
    user_logged_in.connect(logged_in, dispatch_uid="security.login")
    user_logged_out.connect(logged_out, dispatch_uid="security.logout")
    # After django-axes's own receiver, which counts the failure on the request.
    user_login_failed.connect(login_failed, dispatch_uid="security.login_failed")
    user_locked_out.connect(locked_out, dispatch_uid="security.lockout")
