"""Service fees beside the debt (issue 21): a batch page showed "total debt" without the fees
each bill's total includes. Lines and batches keep the fees apart; existing rows are summed
from their bills."""

from django.db import migrations, models
from django.db.models import DecimalField, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce


def sum_fees(apps, schema_editor):
    Line = apps.get_model("billqueries", "BillQueryLine")
    Debt = apps.get_model("billqueries", "BillDebt")
    Batch = apps.get_model("billqueries", "BillQueryBatch")

    def summed(model, key, field):
        rows = model.objects.filter(**{key: OuterRef("pk")}).order_by().values(key)
        rows = rows.annotate(s=Sum(field)).values("s")
        return Coalesce(Subquery(rows, output_field=DecimalField()), 0, output_field=DecimalField())

    Line.objects.filter(debt_count__gt=0).update(fee_total=summed(Debt, "line", "merchant_profit"))
    Batch.objects.filter(debt_count__gt=0).update(fee_total=summed(Line, "batch", "fee_total"))


class Migration(migrations.Migration):

    dependencies = [
        ('billqueries', '0003_input_line_number'),
    ]

    operations = [
        migrations.AddField(
            model_name='billquerybatch',
            name='fee_total',
            field=models.DecimalField(decimal_places=2, default=0, max_digits=16, verbose_name='service fees'),
        ),
        migrations.AddField(
            model_name='billqueryline',
            name='fee_total',
            field=models.DecimalField(decimal_places=2, default=0, max_digits=14, verbose_name='service fees'),
        ),
        migrations.RunPython(sum_fees, migrations.RunPython.noop),
    ]
