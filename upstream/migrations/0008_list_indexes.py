"""Indexes for the admin's and the API's lists (issue 8: every list stays fast on a million
rows). Built CONCURRENTLY on PostgreSQL, so writes to the tables go on while they build;
hence atomic = False. Plain AddIndex elsewhere (upstream/indexes.py)."""

import django.db.models.functions.text
import upstream.lists.indexes
from django.conf import settings
from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations, models

from upstream.lists.indexes import AddIndexConcurrentlyOnPostgres, DropFieldIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('upstream', '0007_job_notice'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # pg_trgm, for the trigram indexes below (a no-op on other databases).
        TrigramExtension(),
        AddIndexConcurrentlyOnPostgres(
            model_name='job',
            index=models.Index(fields=['inline', 'created_at'], name='job_inline_created_idx'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='job',
            index=upstream.lists.indexes.TrigramIndex(django.db.models.functions.text.Upper('title'), name='job_title_trgm'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='job',
            index=upstream.lists.indexes.TrigramIndex(django.db.models.functions.text.Upper('reason'), name='job_reason_trgm'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='jobitem',
            index=models.Index(fields=['outcome', 'job', 'position'], name='jobitem_outcome_job_pos_idx'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='jobitem',
            index=models.Index(condition=models.Q(('in_doubt', True)), fields=['job', 'position'], name='jobitem_in_doubt_idx'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='jobitem',
            index=models.Index(fields=['finished_at', 'id'], name='jobitem_finished_id_idx'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='jobitem',
            index=models.Index(fields=['target_repr'], name='jobitem_target_repr_idx', opclasses=['varchar_pattern_ops']),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='upstreamcall',
            index=models.Index(fields=['upstream_code', 'created_at'], name='call_upstream_code_idx'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='upstreamcall',
            index=models.Index(fields=['created_at', 'id'], name='call_created_id_idx'),
        ),
        # Single-column indexes the composite indexes above now cover.
        DropFieldIndexConcurrentlyOnPostgres(
            model_name='upstreamcall',
            name='created_at',
            field=models.DateTimeField(verbose_name='created at'),
        ),
    ]
