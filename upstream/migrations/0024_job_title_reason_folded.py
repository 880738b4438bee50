"""Issue 20: a job's title and reason stored folded (generated columns the database keeps on
every write), their trigram indexes moved to them: a common word's capped count rechecks the
columns, not TRANSLATE per row (decision 019). Adding the columns rewrites the table under an
exclusive lock; the new indexes are built CONCURRENTLY before the old ones are dropped, so
searches keep an index meanwhile; hence atomic = False."""

import upstream.lists.fold
import upstream.lists.indexes
from django.db import migrations, models

from upstream.lists.indexes import AddIndexConcurrentlyOnPostgres, RemoveIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('upstream', '0023_one_active_sync'),
    ]

    operations = [
        migrations.AddField(
            model_name='job',
            name='title_folded',
            field=models.GeneratedField(
                db_persist=True,
                expression=upstream.lists.fold.Folded('title'),
                output_field=models.TextField(),
            ),
        ),
        migrations.AddField(
            model_name='job',
            name='reason_folded',
            field=models.GeneratedField(
                db_persist=True,
                expression=upstream.lists.fold.Folded('reason'),
                output_field=models.TextField(),
            ),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='job',
            index=upstream.lists.indexes.TrigramIndex(
                models.F('title_folded'), name='job_title_folded_trgm'
            ),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='job',
            index=upstream.lists.indexes.TrigramIndex(
                models.F('reason_folded'), name='job_reason_folded_trgm'
            ),
        ),
        RemoveIndexConcurrentlyOnPostgres(
            model_name='job',
            name='job_title_fold_trgm',
        ),
        RemoveIndexConcurrentlyOnPostgres(
            model_name='job',
            name='job_reason_fold_trgm',
        ),
    ]
