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
        ('billing', '0003_drop_push_lock_fields'),
    ]

    operations = [
        # pg_trgm, for the trigram indexes below (a no-op on other databases).
        TrigramExtension(),
        AddIndexConcurrentlyOnPostgres(
            model_name='invoice',
            index=models.Index(fields=['created_at_upstream', 'id'], name='inv_created_id_idx'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='invoice',
            index=models.Index(fields=['status', 'created_at_upstream', 'id'], name='inv_status_created_idx'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='invoice',
            index=models.Index(fields=['currency', 'created_at_upstream', 'id'], name='inv_currency_created_idx'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='invoice',
            index=models.Index(fields=['due_date', 'id'], name='inv_due_date_id_idx'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='invoice',
            index=upstream.lists.indexes.TrigramIndex(django.db.models.functions.text.Upper('full_name'), name='inv_full_name_trgm'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='invoice',
            index=upstream.lists.indexes.TrigramIndex(django.db.models.functions.text.Upper('company_name'), name='inv_company_name_trgm'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='invoiceitem',
            index=models.Index(fields=['tax_exempt', 'wisecp_id'], name='item_tax_exempt_idx'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='invoiceitem',
            index=models.Index(fields=['due_date', 'id'], name='item_due_date_id_idx'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='invoiceitem',
            index=models.Index(fields=['order_id'], name='item_order_id_idx'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='invoiceitem',
            index=upstream.lists.indexes.TrigramIndex(django.db.models.functions.text.Upper('description'), name='item_description_trgm'),
        ),
        # Single-column indexes the composite indexes above now cover.
        DropFieldIndexConcurrentlyOnPostgres(
            model_name='invoice',
            name='created_at_upstream',
            field=models.DateTimeField(blank=True, null=True, verbose_name='created at WiseCP'),
        ),
        DropFieldIndexConcurrentlyOnPostgres(
            model_name='invoice',
            name='currency',
            field=models.CharField(default='TRY', max_length=3, verbose_name='currency'),
        ),
        DropFieldIndexConcurrentlyOnPostgres(
            model_name='invoice',
            name='due_date',
            field=models.DateTimeField(blank=True, null=True, verbose_name='due date'),
        ),
        DropFieldIndexConcurrentlyOnPostgres(
            model_name='invoice',
            name='status',
            field=models.CharField(choices=[('unpaid', 'Unpaid'), ('pending', 'Pending'), ('paid', 'Paid'), ('refunded', 'Refunded'), ('cancelled', 'Cancelled')], max_length=16, verbose_name='status'),
        ),
        DropFieldIndexConcurrentlyOnPostgres(
            model_name='invoiceitem',
            name='due_date',
            field=models.DateTimeField(blank=True, null=True, verbose_name='due date'),
        ),
    ]
