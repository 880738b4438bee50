"""Deep pages (issue 20, decision 019): a job item's job_id index goes; the (job, position)
constraint's index serves every read by job, in position order. Dropped CONCURRENTLY on
PostgreSQL, hence atomic = False."""

import django.db.models.deletion
from django.db import migrations, models

from upstream.lists.indexes import DropFieldIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("upstream", "0020_search_folded"),
    ]

    operations = [
        DropFieldIndexConcurrentlyOnPostgres(
            model_name="jobitem",
            name="job",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="items",
                to="upstream.job",
                verbose_name="job",
            ),
        ),
    ]
