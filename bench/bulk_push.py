"""Push 5,000 Paynet status changes through the job runner against the sandbox, and a sample of the
naive one-at-a-time loop, in one run.

    .venv/bin/python bench/bulk_push.py [--records 5000] [--latency-ms 50] [--concurrency 16]

The sandbox runs in its own process (as in production, the upstream is not in our process). The
database is a fresh SQLite file unless BENCH_DATABASE_URL names another (e.g. PostgreSQL).
Last line: ratio_to_bound=<pushes per second / (C/L)> speedup_vs_naive=<x>
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import free_port, fresh_postgres, peak_rss_kb  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--naive-sample", type=int, default=100)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-bulk-push-"))
    if os.environ.get("BENCH_DATABASE_URL", "").startswith("postgres"):
        fresh_postgres(os.environ["BENCH_DATABASE_URL"])
    port = free_port()
    sandbox_url = f"http://127.0.0.1:{port}"
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": os.environ.get(
                "BENCH_DATABASE_URL", f"sqlite:///{workdir / 'bench.sqlite3'}"
            ),
            "TASKS_BACKEND": "dummy",  # the bench drives the runner itself
            # As in production (and bench/sync_scale.py, bench/bill_queries.py): DEBUG keeps
            # and formats every SQL statement, which no production worker does.
            "DJANGO_DEBUG": "false",
            "SANDBOX_URL": sandbox_url,
            "PAYNET_CONCURRENCY": str(args.concurrency),
            "DJANGO_LOG_LEVEL": "WARNING",
            # The push path is measured, not the wait for a second person: no approval.
            "APPROVAL_MIN_ITEMS": "1000000000",
            "APPROVAL_MIN_AMOUNT": "1000000000000",
        }
    )
    sandbox = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "sandbox",
            "--port",
            str(port),
            "--latency-ms",
            str(args.latency_ms),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        run(args, sandbox_url, workdir)
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)


def run(args: argparse.Namespace, sandbox_url: str, workdir: Path) -> None:
    import django
    import requests

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    from subscriptions.models import InvoiceStatus, Subscription, SubscriptionInvoice
    from subscriptions.services import (
        subscription_invoice_set_status,
        subscription_invoice_set_status_bulk,
    )
    from subscriptions.sync import paynet_sync
    from upstream.pushes.bulk import run_job

    http = requests.Session()
    for _ in range(100):
        try:
            http.get(f"{sandbox_url}/_sandbox/health", timeout=1).raise_for_status()
            break
        except requests.RequestException:
            time.sleep(0.1)
    per_sub = 20
    subs_needed = -(-(args.records + args.naive_sample) // per_sub)
    seeded = http.post(
        f"{sandbox_url}/_sandbox/state/paynet",
        json={
            "command": "seed_bulk",
            "subscriptions": subs_needed,
            "records_per_subscription": per_sub,
        },
    ).json()
    bulk_ids = set(seeded["subscriptions"])

    call_command("migrate", verbosity=0)
    actor = get_user_model().objects.create_superuser("bench", password=None)
    paynet_sync()
    records = SubscriptionInvoice.objects.filter(
        subscription__in=Subscription.objects.filter(subscription_id__in=bulk_ids),
        status=InvoiceStatus.WAITING,
    ).order_by("pk")
    ids = list(records.values_list("pk", flat=True))
    bulk, naive = ids[: args.records], ids[args.records : args.records + args.naive_sample]
    assert len(bulk) == args.records and len(naive) == args.naive_sample, (
        "not enough seeded records"
    )

    # The naive loop: one record at a time through the single-record service (as a request would).
    started = time.perf_counter()
    for record in SubscriptionInvoice.objects.filter(pk__in=naive).select_related("subscription"):
        subscription_invoice_set_status(
            record=record, status=InvoiceStatus.DONE_UNSUCCEED, actor=actor, reason="benchmark"
        )
    naive_elapsed = time.perf_counter() - started
    naive_rate = len(naive) / naive_elapsed

    job = subscription_invoice_set_status_bulk(
        records=SubscriptionInvoice.objects.filter(pk__in=bulk),
        status=InvoiceStatus.CANCEL,
        actor=actor,
        reason="benchmark",
    )
    started = time.perf_counter()
    # The launch froze the selection; writing its items is the job's own work, timed with it
    # (the run writes the first items, then the rest while the first are out).
    counts = run_job(job.pk)
    elapsed = time.perf_counter() - started
    rate = args.records / elapsed
    bound = args.concurrency / (args.latency_ms / 1000)

    ledger = http.get(
        f"{sandbox_url}/_sandbox/ledger",
        params={"service": "paynet", "operation": "invoice_status_update"},
    ).json()
    pushed = [e["request"].get("invoice_no") for e in ledger]
    applied = SubscriptionInvoice.objects.filter(pk__in=bulk, status=InvoiceStatus.CANCEL).count()
    peak_rss_mb = peak_rss_kb() / 1024
    result = {
        "database": connection.vendor,
        "records": args.records,
        "latency_ms": args.latency_ms,
        "concurrency": args.concurrency,
        "elapsed_s": round(elapsed, 2),
        "pushes_per_s": round(rate, 1),
        "bound_per_s": bound,
        "naive_sample": len(naive),
        "naive_per_s": round(naive_rate, 1),
        "job": counts,
        "ledger_writes": len(pushed),
        "ledger_distinct_records": len(set(pushed)),
        "mirror_applied": applied,
        "peak_rss_mb": round(peak_rss_mb, 1),
    }
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"bulk_push-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(
        json.dumps(result, indent=2)
    )
    for key, value in result.items():
        print(f"{key}: {value}")
    ok = counts["succeeded"] == args.records and applied == args.records
    ok = ok and len(pushed) == len(set(pushed)) == args.records + len(naive)
    print(f"checks: {'ok' if ok else 'FAILED'} (every record pushed once, all applied)")
    print(f"ratio_to_bound={rate / bound:.3f} speedup_vs_naive={rate / naive_rate:.1f}")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
