"""A full sync of each upstream as a job, at the upstream's speed limit and with flat memory
(issue 18): a sandbox Paynet of about 100,000 payment records in 12,500 subscriptions, and a
sandbox WiseCP of 20,000 invoices, each request answered after 50 ms, C = 16 requests in flight.

    .venv/bin/python bench/sync_scale.py            # the full run (a few minutes)
    .venv/bin/python bench/sync_scale.py --quick    # a twentieth of the size: a sanity run
    .venv/bin/python bench/sync_scale.py --only paynet   # one upstream (paynet or wisecp)
    SYNC_BENCH_SCALE=0.2 .venv/bin/python bench/sync_scale.py   # any fraction of it

For each upstream the sync runs twice, each time in a fresh worker process on a fresh database
(a SQLite file in a temporary directory, or BENCH_DATABASE_URL, dropped and recreated when it is
PostgreSQL): at N (a quarter of the size) and at 4N (the full size). Time is that of the 4N run;
`ratio_to_bound` = (requests × L / C) / elapsed, requests counted by the sandbox itself; memory is
each worker's own peak RSS (the process does nothing but the sync: migrations run before, in
another process; `bench._common.peak_rss_kb` leaves out the parent's, which holds the sandbox),
`rss_growth` = peak at 4N / peak at N. The baseline, measured in the same run, is the old
one-at-a-time loop (`upstream_sync`'s per-record loop) over a sample of the same upstream.

The sandbox runs in a thread of this process; the workers talk to it over HTTP.
Per upstream one line, then the last line, the worse of the two on each figure:
    ratio_to_bound=<min> rss_growth=<max> requests=<sum> records=<sum>
"""

from __future__ import annotations

import copy
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LATENCY_MS = 50
CONCURRENCY = int(os.environ.get("SYNC_BENCH_CONCURRENCY", "16"))
PAYNET_SUBSCRIPTIONS = 12_500
PAYNET_PER_SUBSCRIPTION = 8
WISECP_INVOICES = 20_000
# Records (subscriptions, invoices) the baseline loop reads, one request after another.
BASELINE_SAMPLE = 40


def services() -> tuple[str, ...]:
    """`--only paynet` (or wisecp): one upstream."""
    if "--only" in sys.argv:
        return (sys.argv[sys.argv.index("--only") + 1],)
    return ("paynet", "wisecp")


def scale() -> float:
    if "--quick" in sys.argv:
        return 0.05
    return float(os.environ.get("SYNC_BENCH_SCALE", "1"))


# --- the parent: the sandbox, the seeding, the worker processes ------------------------------


def main() -> None:
    from sandbox.server import start_in_thread

    if "--child" in sys.argv:
        child(sys.argv[sys.argv.index("--child") + 1])
        return
    server = start_in_thread(latency_ms=LATENCY_MS)
    workdir = Path(tempfile.mkdtemp(prefix="bench-sync-scale-"))
    lines, results = [], {}
    try:
        for service in services():
            runs = {}
            for label, fraction in (("N", 0.25), ("4N", 1.0)):
                size = seed(server, service, fraction * scale())
                runs[label] = run_worker(server, workdir, service, "sync", size)
            seed(server, service, BASELINE_SAMPLE / _full(service))
            baseline = run_worker(server, workdir, service, "baseline", {})
            full = runs["4N"]
            bound = full["requests"] * LATENCY_MS / 1000 / CONCURRENCY
            resync_bound = full["calls"][1] * LATENCY_MS / 1000 / CONCURRENCY
            result = {
                "service": service,
                "records": full["records"],
                "requests": full["requests"],
                "elapsed_s": round(full["elapsed"], 2),
                "bound_s": round(bound, 2),
                # The first sync, into an empty mirror: every record created, with its history.
                "ratio_to_bound": round(bound / full["elapsed"], 3),
                # The periodic sync that follows, nothing changed upstream.
                "resync_elapsed_s": round(full["elapsed_resync"], 2),
                "resync_ratio_to_bound": round(resync_bound / full["elapsed_resync"], 3),
                "worker_cpu_s": full["cpu_s"],
                "rss_n_mb": round(runs["N"]["peak_rss_kb"] / 1024, 1),
                "rss_4n_mb": round(full["peak_rss_kb"] / 1024, 1),
                "rss_growth": round(full["peak_rss_kb"] / runs["N"]["peak_rss_kb"], 3),
                "baseline_requests_per_s": round(baseline["requests"] / baseline["elapsed"], 1),
                "requests_per_s": round(full["requests"] / full["elapsed"], 1),
                "checks": full["checks"] and runs["N"]["checks"],
                "job": full["job"],
                "n_run": {k: runs["N"][k] for k in ("records", "requests", "elapsed")},
            }
            result["speedup_vs_baseline"] = round(
                result["requests_per_s"] / result["baseline_requests_per_s"], 1
            )
            results[service] = result
            for key, value in result.items():
                print(f"{service} {key}: {value}", flush=True)
            lines.append(
                f"{service}: ratio_to_bound={result['ratio_to_bound']} "
                f"resync_ratio_to_bound={result['resync_ratio_to_bound']} "
                f"rss_growth={result['rss_growth']} requests={result['requests']} "
                f"records={result['records']} baseline={result['baseline_requests_per_s']} req/s "
                f"checks={'ok' if result['checks'] else 'FAILED'}"
            )
    finally:
        server.shutdown()
        server.server_close()
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"sync_scale-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(
        json.dumps({"scale": scale(), "concurrency": CONCURRENCY, **results}, indent=2)
    )
    for line in lines:
        print(line)
    worst = list(results.values())
    print(
        f"ratio_to_bound={min(r['ratio_to_bound'] for r in worst)} "
        f"rss_growth={max(r['rss_growth'] for r in worst)} "
        f"requests={sum(r['requests'] for r in worst)} records={sum(r['records'] for r in worst)}"
    )
    if not all(r["checks"] for r in worst):
        sys.exit(1)


def _full(service: str) -> int:
    return PAYNET_SUBSCRIPTIONS if service == "paynet" else WISECP_INVOICES


def seed(server, service: str, fraction: float) -> dict[str, int]:
    """Reset the sandbox and grow `service` to `fraction` of its full size."""
    server.sandbox.reset()
    target = max(1, round(_full(service) * fraction))
    upstream = next(s for s in server.sandbox.services if s.name == service)
    with upstream.lock:
        if service == "paynet":
            have = len(upstream._subs)
            if target > have:  # the seeded subscriptions (about 40) stay, as the baseline's
                upstream._seed_bulk(target - have, PAYNET_PER_SUBSCRIPTION, 0)
            records = len(upstream._invoices_by_no)
            return {"subscriptions": len(upstream._subs), "records": records}
        _grow_wisecp(upstream, target)
        return {"invoices": len(upstream.invoices), "records": len(upstream.items)}


def _grow_wisecp(wisecp, target: int) -> None:
    """Copies of the seeded invoices (with their items) under new ids, up to `target`."""
    models = list(wisecp.invoices.values())
    while len(wisecp.invoices) > target:
        invoice_id = max(wisecp.invoices)
        for item_id in wisecp.items_of.pop(invoice_id):
            del wisecp.items[item_id]
        del wisecp.invoices[invoice_id]
    next_id = max(wisecp.invoices) + 1
    while len(wisecp.invoices) < target:
        model = models[next_id % len(models)]
        invoice = copy.deepcopy(model)
        invoice["id"], invoice["number"] = next_id, f"#{next_id}"
        wisecp.invoices[next_id] = invoice
        wisecp.items_of[next_id] = []
        for item_id in wisecp.items_of[model["id"]]:
            item = copy.deepcopy(wisecp.items[item_id])
            item["id"], item["owner_id"] = wisecp.next_item_id, next_id
            wisecp.items[item["id"]] = item
            wisecp.items_of[next_id].append(item["id"])
            wisecp.next_item_id += 1
        next_id += 1


def run_worker(server, workdir: Path, service: str, mode: str, size: dict) -> dict:
    database = os.environ.get("BENCH_DATABASE_URL")
    if database:
        from bench._common import fresh_postgres

        fresh_postgres(database)
    else:
        path = workdir / f"{service}-{mode}-{time.monotonic_ns()}.sqlite3"
        database = f"sqlite:///{path}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database,
        "TASKS_BACKEND": "dummy",  # the worker runs the job itself
        "SANDBOX_URL": server.url,
        "PAYNET_BASE_URL": f"{server.url}/paynet",
        "WISECP_API_URL": f"{server.url}/wisecp/api/",
        "PAYOFIN_BASE_URL": f"{server.url}/payofin",
        "PAYNET_CONCURRENCY": str(CONCURRENCY),
        "WISECP_CONCURRENCY": str(CONCURRENCY),
        "DJANGO_LOG_LEVEL": "WARNING",
        # As in production: DEBUG keeps every SQL statement in memory, which no worker does.
        "DJANGO_DEBUG": "false",
        "SYNC_BENCH_EXPECT": json.dumps(size),
    }
    python = sys.executable
    subprocess.run(
        [python, str(ROOT / "manage.py"), "migrate", "--verbosity", "0"], env=env, check=True
    )
    before = len(server.sandbox.requests.entries(service)) if mode == "sync" else 0
    done = subprocess.run(
        [python, str(Path(__file__).resolve()), "--child", f"{service}:{mode}"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if mode == "sync":
        # The sandbox's own count of what it was asked, against the call log's (one row each).
        asked = len(server.sandbox.requests.entries(service)) - before
        result["requests"] = result["calls"][0]
        result["checks"] = result["checks"] and asked == sum(result["calls"])
    return result


# --- the worker: one sync (or the baseline loop), nothing else --------------------------------


def child(spec: str) -> None:
    import django

    django.setup()
    service, mode = spec.split(":")
    if mode == "baseline":
        print(json.dumps(baseline(service)))
        return
    from bench._common import peak_rss_kb
    from upstream.history.sync_job import sync_start
    from upstream.models import RecordChange, UpstreamCall
    from upstream.pushes.bulk import run_job

    expect = json.loads(os.environ["SYNC_BENCH_EXPECT"])
    timings, jobs, cpu = [], [], []
    # The first sync fills an empty mirror; the second is the periodic one (nothing changed).
    for run in range(2):
        started, cpu_before = time.perf_counter(), _cpu()
        job, _created = sync_start(service, enqueue=False)
        run_job(job.pk)
        timings.append(time.perf_counter() - started)
        cpu.append(round(_cpu() - cpu_before, 2))
        job.refresh_from_db()
        jobs.append(job)
        if run == 0:
            changes = RecordChange.objects.count()
    records, checks = _mirrored(service, expect)
    first, second = jobs
    calls = [UpstreamCall.objects.filter(job_id=j.pk).count() for j in jobs]
    print(
        json.dumps(
            {
                "elapsed": timings[0],
                "elapsed_resync": timings[1],
                "calls": calls,
                # The worker's own CPU seconds per sync: near the elapsed time, it is CPU-bound.
                "cpu_s": cpu,
                "records": records,
                "requests": 0,
                "peak_rss_kb": peak_rss_kb(),
                "checks": checks
                and first.state == second.state == "succeeded"
                # The periodic sync with nothing changed wrote no history row.
                and RecordChange.objects.count() == changes,
                "job": {"state": first.state, "items": first.total, "failed": first.failed},
            }
        )
    )


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _mirrored(service: str, expect: dict) -> tuple[int, bool]:
    if service == "paynet":
        from subscriptions.models import Subscription, SubscriptionInvoice

        records = SubscriptionInvoice.objects.count()
        ok = (
            records == expect["records"] and Subscription.objects.count() == expect["subscriptions"]
        )
        return records, ok
    from billing.models import Invoice, InvoiceItem

    records = InvoiceItem.objects.count()
    return records, records == expect["records"] and Invoice.objects.count() == expect["invoices"]


def baseline(service: str) -> dict:
    """The old loop (`upstream_sync`: one request after another) over the small seeded upstream."""
    from upstream.history.sync import upstream_sync
    from upstream.models import UpstreamCall

    started = time.perf_counter()
    upstream_sync(service)
    elapsed = time.perf_counter() - started
    return {"elapsed": elapsed, "requests": UpstreamCall.objects.count()}


if __name__ == "__main__":
    main()
