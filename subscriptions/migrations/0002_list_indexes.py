"""Indexes for the admin's and the API's lists (issue 8: every list stays fast on a million
rows). Built CONCURRENTLY on PostgreSQL, so writes to the tables go on while they build;
hence atomic = False. Plain AddIndex elsewhere (upstream/indexes.py)."""

import django.db.models.functions.text
import upstream.lists.indexes
from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations, models

from upstream.lists.indexes import AddIndexConcurrentlyOnPostgres, DropFieldIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('subscriptions', '0001_initial'),
    ]

    operations = [
        # pg_trgm, for the trigram indexes below (a no-op on other databases).
        TrigramExtension(),
        AddIndexConcurrentlyOnPostgres(
            model_name='subscription',
            index=models.Index(fields=['created_date', 'id'], name='sub_created_id_idx'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='subscription',
            index=models.Index(fields=['is_fixed_price', 'created_date', 'id'], name='sub_fixed_created_idx'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='subscription',
            index=models.Index(fields=['interval', 'created_date', 'id'], name='sub_interval_created_idx'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='subscription',
            index=models.Index(fields=['status', 'created_date', 'id'], name='sub_status_created_idx'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='subscription',
            index=models.Index(fields=['name_surname', 'id'], name='sub_name_id_idx'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='subscription',
            index=upstream.lists.indexes.TrigramIndex(django.db.models.functions.text.Upper('name_surname'), name='sub_name_trgm'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='subscription',
            index=models.Index(fields=['end_user_email'], name='sub_email_idx'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='subscription',
            index=models.Index(fields=['end_user_gsm'], name='sub_gsm_idx'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='subscriptioninvoice',
            index=models.Index(fields=['val_date', 'id'], name='subinv_val_date_id_idx'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='subscriptioninvoice',
            index=models.Index(fields=['status', 'val_date', 'id'], name='subinv_status_val_date_idx'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='subscriptioninvoice',
            index=models.Index(fields=['amount', 'id'], name='subinv_amount_id_idx'),
        ),
        # Single-column indexes the composite indexes above now cover.
        DropFieldIndexConcurrentlyOnPostgres(
            model_name='subscriptioninvoice',
            name='status',
            field=models.PositiveSmallIntegerField(choices=[(0, 'Waiting'), (2, 'Collected outside Paynet'), (3, 'Charged'), (4, 'Not charged'), (5, 'Cancelled'), (6, 'Deleted')], verbose_name='status'),
        ),
        DropFieldIndexConcurrentlyOnPostgres(
            model_name='subscriptioninvoice',
            name='val_date',
            field=models.DateTimeField(blank=True, null=True, verbose_name='charge date'),
        ),
    ]
