"""The bill query batches' search by file name gets a trigram index on the folded name (issue 20),
built CONCURRENTLY on PostgreSQL so uploads go on meanwhile; hence atomic = False."""

from django.db import migrations

import upstream.lists.fold
import upstream.lists.indexes
from upstream.lists.indexes import AddIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("billqueries", "0005_deep_pages"),
        # pg_trgm is created there.
        ("subscriptions", "0002_list_indexes"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="billquerybatch",
            index=upstream.lists.indexes.TrigramIndex(
                upstream.lists.fold.Folded("filename"), name="batch_filename_fold_trgm"
            ),
        ),
    ]
