import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandParser

from upstream.groups import APPROVERS, OPERATORS, VIEWERS


class Command(BaseCommand):
    help = "Create (or reset) a superuser with a fresh random password and print it once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")
        parser.add_argument(
            "--demo-users", action="store_true", help="also an operator, an approver and a viewer"
        )

    def handle(self, *args, username: str, demo_users: bool, **options) -> None:
        User = get_user_model()
        logins = [(username, None, True)]
        if demo_users:
            logins += [
                ("operator", OPERATORS, False),
                ("approver", APPROVERS, False),
                ("viewer", VIEWERS, False),
            ]
        for name, group, superuser in logins:
            password = secrets.token_urlsafe(12)
            user, _ = User.objects.get_or_create(username=name)
            user.is_staff = True
            user.is_superuser = superuser
            # An address, so "job finished" e-mails reach someone (make run: var/mail/).
            user.email = user.email or f"{name}@backoffice.example"
            user.set_password(password)
            user.save()
            if group:
                user.groups.set([Group.objects.get(name=group)])
            self.stdout.write(f"  login: {name} / {password}" + (f"  ({group})" if group else ""))
