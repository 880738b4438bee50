"""API tokens (django-rest-knox): hashed at rest, with an expiry, revocable, ended by a
password change.

Only a digest (SHA-512) and the key's first 15 characters are stored; the token itself is shown
once, when it is made. A token unused for API_TOKEN_IDLE_HOURS expires; each use moves the
expiry (at most once a minute), never past API_TOKEN_MAX_DAYS after it was made. Revoking
deletes its row. A password change (the user's own, or one an administrator sets) revokes every
token of the user, as it ends their other sessions.
"""

from __future__ import annotations

from typing import Any

from knox.models import AuthToken

from .log import event


def api_token_create(*, user: Any, actor: Any = None) -> tuple[AuthToken, str]:
    """Make a token for `user`; returns its row and the token, which is never stored."""
    instance, token = AuthToken.objects.create(user=user)
    event(
        "api_token_created",
        user=user.get_username(),
        by=actor.get_username() if actor is not None else None,
        key=instance.token_key[:8],
    )
    return instance, token


def api_token_revoke(*, token: AuthToken, actor: Any = None) -> None:
    """End one token at once."""
    event(
        "api_token_revoked",
        user=token.user.get_username(),
        by=actor.get_username() if actor is not None else None,
        key=token.token_key[:8],
    )
    token.delete()


def api_tokens_revoke_all(*, user: Any, reason: str) -> int:
    """End every token of `user` (a password change, a departure); returns how many."""
    count, _ = AuthToken.objects.filter(user=user).delete()
    if count:
        event("api_tokens_revoked", user=user.get_username(), reason=reason, count=count)
    return count
