"""Deep pages (issue 20, decision 019): the dashboard's Payofin lines per day read from an index
on (queried_at, outcome) instead of the whole table. Built CONCURRENTLY on PostgreSQL, hence
atomic = False."""

from django.db import migrations, models

from upstream.lists.indexes import AddIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("billqueries", "0004_bill_service_fee_totals"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="billqueryline",
            index=models.Index(fields=["queried_at", "outcome"], name="line_queried_outcome_idx"),
        ),
    ]
