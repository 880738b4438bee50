"""Make, list and revoke API tokens from the shell (the admin's "API tokens" page does the same).

manage.py api_token create USERNAME     prints the token once; only its digest is kept
manage.py api_token list [USERNAME]     who has tokens, their start and expiry
manage.py api_token revoke USERNAME     ends every token of the user
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from knox.models import AuthToken

from security.tokens import api_token_create, api_tokens_revoke_all


class Command(BaseCommand):
    help = "Make, list and revoke API tokens (hashed at rest, with an expiry)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["create", "list", "revoke"])
        parser.add_argument("username", nargs="?")

    def handle(self, *args: Any, action: str, username: str | None, **options: Any) -> None:
        users = get_user_model().objects
        user = None
        if username:
            user = users.filter(username=username).first()
            if user is None:
                raise CommandError(f"No user {username!r}.")
        elif action != "list":
            raise CommandError(f"{action} needs a user name.")
        if action == "create":
            token, key = api_token_create(user=user)
            self.stdout.write(key)
            self.stderr.write(f"expires {token.expiry:%Y-%m-%d %H:%M} UTC unless used before")
        elif action == "revoke":
            count = api_tokens_revoke_all(user=user, reason="command")
            self.stdout.write(f"{count} token(s) of {user} revoked")
        else:
            tokens = AuthToken.objects.select_related("user").order_by("user__username", "created")
            if user is not None:
                tokens = tokens.filter(user=user)
            for token in tokens:
                self.stdout.write(f"{token.user}\t{token.token_key[:8]}…\texpires {token.expiry}")
