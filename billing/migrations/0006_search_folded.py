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
        ('billing', '0005_labels_for_codes'),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name='invoice',
            index=upstream.lists.indexes.TrigramIndex(upstream.lists.fold.Folded('full_name'), name='inv_full_name_fold_trgm'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='invoice',
            index=upstream.lists.indexes.TrigramIndex(upstream.lists.fold.Folded('company_name'), name='inv_company_fold_trgm'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='invoiceitem',
            index=upstream.lists.indexes.TrigramIndex(upstream.lists.fold.Folded('description'), name='item_descr_fold_trgm'),
        ),
        RemoveIndexConcurrentlyOnPostgres(
            model_name='invoice',
            name='inv_full_name_trgm',
        ),
        RemoveIndexConcurrentlyOnPostgres(
            model_name='invoice',
            name='inv_company_name_trgm',
        ),
        RemoveIndexConcurrentlyOnPostgres(
            model_name='invoiceitem',
            name='item_description_trgm',
        ),
    ]
