"""Searches compare text Turkish-case folded (upstream.lists.fold): the trigram indexes move from
UPPER(col) to the folded column. The new index is built before the old one is dropped, both
CONCURRENTLY on PostgreSQL, so searches and writes go on meanwhile; hence atomic = False."""

import upstream.lists.fold
import upstream.lists.indexes
from django.conf import settings
from django.db import migrations

from upstream.lists.indexes import AddIndexConcurrentlyOnPostgres, RemoveIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('upstream', '0019_recordchange_source_read_back'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name='job',
            index=upstream.lists.indexes.TrigramIndex(upstream.lists.fold.Folded('title'), name='job_title_fold_trgm'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='job',
            index=upstream.lists.indexes.TrigramIndex(upstream.lists.fold.Folded('reason'), name='job_reason_fold_trgm'),
        ),
        RemoveIndexConcurrentlyOnPostgres(
            model_name='job',
            name='job_title_trgm',
        ),
        RemoveIndexConcurrentlyOnPostgres(
            model_name='job',
            name='job_reason_trgm',
        ),
    ]
