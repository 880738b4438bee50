"""DRF's API tokens were stored in clear (`authtoken_token`): each becomes a django-rest-knox
token with the same key (hashed; clients keep working) and the usual expiry, and the clear
keys are deleted. A fresh database has no such table: nothing to do."""

from datetime import timedelta

from django.conf import settings
from django.db import migrations
from django.utils import timezone


def hash_clear_tokens(apps, schema_editor):
    from knox.crypto import hash_token

    connection = schema_editor.connection
    if "authtoken_token" not in connection.introspection.table_names():
        return
    AuthToken = apps.get_model("knox", "AuthToken")
    expiry = timezone.now() + timedelta(hours=settings.API_TOKEN_IDLE_HOURS)
    with connection.cursor() as cursor:
        cursor.execute("SELECT key, user_id FROM authtoken_token")
        rows = cursor.fetchall()
        AuthToken.objects.bulk_create(
            [
                AuthToken(digest=hash_token(key), token_key=key[:15], user_id=user, expiry=expiry)
                for key, user in rows
            ]
        )
        cursor.execute("DELETE FROM authtoken_token")


class Migration(migrations.Migration):
    dependencies = [
        ("security", "0001_initial"),
        ("knox", "0009_extend_authtoken_field"),
    ]

    operations = [migrations.RunPython(hash_clear_tokens, migrations.RunPython.noop)]
