from django.db import migrations, models


def close_duplicates(apps, schema_editor):
    """Before the constraint: of several open entries for one record and field, keep the first
    seen open (it holds what we expected first) and mark the others accepted, saying why."""
    Drift = apps.get_model("upstream", "Drift")
    seen = set()
    duplicates = []
    rows = (
        Drift.objects.filter(state="open")
        .order_by("content_type_id", "object_id", "field", "first_seen_at", "id")
        .values_list("id", "content_type_id", "object_id", "field")
    )
    for pk, content_type, object_id, field in rows.iterator():
        key = (content_type, object_id, field)
        if key in seen:
            duplicates.append(pk)
        else:
            seen.add(key)
    for start in range(0, len(duplicates), 500):
        Drift.objects.filter(pk__in=duplicates[start : start + 500]).update(
            state="accepted", resolution_reason="Duplicate of an earlier open entry."
        )


class Migration(migrations.Migration):
    dependencies = [("upstream", "0013_drift_recordchange")]

    operations = [
        migrations.RunPython(close_duplicates, migrations.RunPython.noop, elidable=True),
        migrations.AddConstraint(
            model_name="drift",
            constraint=models.UniqueConstraint(
                condition=models.Q(("state", "open")),
                fields=("content_type", "object_id", "field"),
                name="drift_one_open_per_field",
            ),
        ),
    ]
