"""Searches compare text Turkish-case folded (upstream.lists.fold): the trigram indexes move from
UPPER(col) to the folded column. The new index is built before the old one is dropped, both
CONCURRENTLY on PostgreSQL, so searches and writes go on meanwhile; hence atomic = False."""

import upstream.lists.fold
import upstream.lists.indexes
from django.db import migrations

from upstream.lists.indexes import AddIndexConcurrentlyOnPostgres, RemoveIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('subscriptions', '0003_labels_for_codes'),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name='subscription',
            index=upstream.lists.indexes.TrigramIndex(upstream.lists.fold.Folded('name_surname'), name='sub_name_fold_trgm'),
        ),
        RemoveIndexConcurrentlyOnPostgres(
            model_name='subscription',
            name='sub_name_trgm',
        ),
    ]
