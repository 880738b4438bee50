"""Indexes for the admin's and the API's lists (issue 8: every list stays fast on a million
rows). Built CONCURRENTLY on PostgreSQL, so writes to the tables go on while they build;
hence atomic = False. Plain AddIndex elsewhere (upstream/indexes.py)."""

from django.conf import settings
from django.db import migrations, models

from upstream.lists.indexes import AddIndexConcurrentlyOnPostgres, DropFieldIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('billqueries', '0001_initial'),
        ('upstream', '0004_job_retried_cancelled_by'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name='billdebt',
            index=models.Index(fields=['invoice_no'], name='debt_invoice_no_idx'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='billquerybatch',
            index=models.Index(fields=['state', 'created_at', 'id'], name='batch_state_created_idx'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='billquerybatch',
            index=models.Index(fields=['source', 'created_at', 'id'], name='batch_source_created_idx'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='billqueryline',
            index=models.Index(fields=['-batch', 'position'], name='line_batch_desc_pos_idx'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='billqueryline',
            index=models.Index(fields=['outcome', '-batch', 'position'], name='line_outcome_batch_idx'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='billqueryline',
            index=models.Index(fields=['state', '-batch', 'position'], name='line_state_batch_idx'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='billqueryline',
            index=models.Index(fields=['institution', '-batch', 'position'], name='line_inst_batch_idx'),
        ),
        # Single-column indexes the composite indexes above now cover.
        DropFieldIndexConcurrentlyOnPostgres(
            model_name='billquerybatch',
            name='state',
            field=models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('finished', 'Finished'), ('failed', 'Failed')], default='queued', max_length=10, verbose_name='state'),
        ),
    ]
