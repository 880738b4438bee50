"""Admin changelists and API lists at 10k and 1M rows; "select all" -> confirm at 500 and 50,000.

    .venv/bin/python bench/admin_scale.py [--sqlite] [--reseed] [--quick] [--only TEXT] [--check]

PostgreSQL by default. Two databases, BENCH_SCALE_10K_URL (default
postgres://postgres@127.0.0.1:5432/bench_scale_10k) and BENCH_SCALE_1M_URL (default
.../bench_scale_1m), are seeded once with server-side SQL (INSERT ... SELECT FROM
generate_series, one statement per table, about 2 minutes for 1M) and reused by later runs: a
small `bench_scale_meta` table marks a finished seed of this script's SEED_VERSION; anything else
is dropped and seeded again (`--reseed` forces it). Every run applies pending migrations
(`manage.py migrate`), removes what an interrupted launch left, and runs VACUUM ANALYZE.

`--sqlite` (or BENCH_SCALE_DB=sqlite): the same on two SQLite files at 10k and 100k records
(BENCH_SCALE_BIG_N sets the big one), var/bench/admin_scale-<N>.sqlite3 (BENCH_SCALE_SQLITE_DIR
moves them), marked and reused the same way. The rows are described once, by seed_statements():
they are seeded in a scratch PostgreSQL database (BENCH_SCALE_SQLITE_SOURCE_URL, default
.../bench_scale_sqlite_source, dropped afterwards) and copied into the migrated SQLite file as
Django writes them there (UTC datetimes as text, JSON as text, content types mapped by name),
so the PostgreSQL server is needed to seed, not to measure. ANALYZE instead of VACUUM ANALYZE.
A database under 1M holds fewer waiting variable-price records than the 50,000 launch needs
(10,000 at 100k): its big launch takes all of them (see launch_plan()), and the figures and the
last line name it (`launch_10k_ms=... launch_sql_10k=...`).

What is seeded, for N = 10,000 and 1,000,000 (the shapes are in seed_statements()):
- N Paynet payment records (20 monthly records per subscription: past ones charged or not
  charged, future ones waiting; a quarter of the subscriptions have a variable price, a quarter
  are cancelled);
- N job items in N / 200 jobs, at least 600 (3 in 5 are single pushes of one item, the rest
  bulk jobs of ~500 items at 1M; every job kind; done, failed, in doubt, skipped, cancelled,
  sending, pending);
  and at every size three more (seed "big jobs"): done bulk jobs of 500 and 50,000 items and a
  bulk job of 50,000 records awaiting approval (its selection frozen, no item written yet);
- N upstream calls with realistic request and response JSON (status pushes, `invoice_list`,
  `GetInvoice`, `UpdateInvoiceItem`, `multipleinvoicequery`; about 1 KB of JSON per call);
- 7 history rows (field changes) per payment record, 1,000 of them on the record whose page and
  timeline are measured;
- every main table grows with N (issue 20): N / 20 subscriptions (names, e-mails, phones), N
  WiseCP invoice items in N / 4 invoices, N bill query lines in N / 50 batches (and a debt per
  line with debt), N / 500 drift entries; jobs and drift entries at least 600, so the largest
  API page is full at every N; 40 Payofin institutions; about the same number of exceptions at
  both sizes (items in doubt or refused, refused calls).

First, in the 1M web process, on the payment-record changelist filtered (status, variable price,
charge date range) to exactly 500 and then 50,000 waiting records (launch_plan()): "select all"
-> Change status… -> preview -> confirm, waiting -> cancelled. Timed: the preview POST and the
confirming POST (the launch: it creates the job), with the SQL statements Django sent (a
connection execute_wrapper counts them) and the web process's memory: its peak RSS growth during the
confirming request, sampled every 2 ms (`--tracemalloc` also runs the launch again, untimed,
under tracemalloc for its peak). The job is deleted after each launch; nothing runs it.

Then, in one web process per database (Django's test client, DEBUG off, persistent connections,
a superuser), alternating request by request so that drift hits both sizes alike: every
changelist of the project's admin, with each of its list filters (one representative value),
each search field (a realistic term), each sortable column (`?o=N`, read from the admin), the
date hierarchy, a deep page of the three big lists (200, or 100 at 100 a page); every API list
with each of its filters (and page 200 of the big ones). Per view: --warmup (1) request, then
--reps (20) timed requests per size, in two passes so the run fits in --budget (24 minutes)
however slow the code is (see measure()): the views that do not get all their requests are the
most expensive ones, far over the goal, and the table marks them `*`.

The table: per view, p50 and p95 (nearest rank) at 10k and 1M, ratio = p95(1M) /
max(p95(10k), RATIO_FLOOR_MS) (the floor keeps a 2 ms view from making a noise ratio), and SQL
statements per request at each size. Figures also go to bench/results/admin_scale-<time>.json
(admin_scale-sqlite-<time>.json), with each page's size in bytes at both sizes: a page that
holds more rows at the big size (a small table's only page at 10k) costs more to render.

Goals (issue 8): worst_p95_ms <= 300, worst_ratio <= 1.5, launch_50k_ms <= 1000, and the launch's
SQL count at 500 equal to that at 50,000 (the big launch, on a smaller database). `--check` exits
1 when one is missed. The figures' keys say "1m" for the big database whatever its size; the
table's headings and the JSON's `sizes` say which.
Last line:
worst_p95_ms=<x> worst_ratio=<x>@<view> launch_50k_ms=<x> launch_sql_500=<n> launch_sql_50k=<n>
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import fresh_postgres  # noqa: E402

DEFAULT_URLS = {
    "10k": "postgres://postgres@127.0.0.1:5432/bench_scale_10k",
    "1m": "postgres://postgres@127.0.0.1:5432/bench_scale_1m",
}
ENV_URLS = {"10k": "BENCH_SCALE_10K_URL", "1m": "BENCH_SCALE_1M_URL"}
# The big database's size ("1m" in the figures' keys): 1M on PostgreSQL, 100k on SQLite;
# BENCH_SCALE_BIG_N sets another (e.g. 100000 for a sanity run on PostgreSQL).
BIG_N = {"postgres": 1_000_000, "sqlite": 100_000}


def scales(backend: str) -> dict[str, int]:
    return {"10k": 10_000, "1m": int(os.environ.get("BENCH_SCALE_BIG_N") or BIG_N[backend])}


def size_label(n: int) -> str:
    """10000 -> "10k", 100000 -> "100k", 1000000 -> "1M" (the table's headings)."""
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


# Bump when seed_statements() changes: a database seeded by another version is seeded again.
SEED_VERSION = "8"
# Jobs and drift entries seeded at least (issue 20): more than MAX_API_PAGE.
FULL_PAGE_ROWS = 600
# The payment record whose page and timeline are measured (issue 9); its id exists at 10k too.
HISTORY_RECORD = 778
ISTANBUL = ZoneInfo("Europe/Istanbul")
# Month 0 of the seeded timeline; records of months 0-11 are past, 12-19 waiting.
BASE = datetime(2025, 12, 1, tzinfo=ISTANBUL)
SYNCED = datetime(2026, 11, 20, 4, 0, tzinfo=ISTANBUL)
# Every seeded payment-record day holds exactly (N/20/25)/4 waiting variable-price records (500 at
# 1M), 25 days a month: one day is 500, months 14-17 (Feb-May 2027) are 50,000.
LAUNCH_SMALL, LAUNCH_BIG = 500, 50_000


def launch_plan(n: int) -> dict[int, tuple[str, str]]:
    """Records -> the charge date range ("first day", "last day") that selects exactly them.

    At 1M: one day (500) and Feb-May 2027 (50,000). A smaller database holds fewer waiting
    variable-price records (5,000 a month at 100k): 500 are the first days of February, and the
    big launch is every one of them, Dec 2026-Jul 2027 (10,000 at 100k), if fewer than 50,000.
    """
    per_day = n // 20 // 25 // 4
    if LAUNCH_SMALL // max(per_day, 1) > 25:
        sys.exit(f"the launch needs a big database of at least 40,000 records, not {n:,}")
    plan = {LAUNCH_SMALL: ("01.02.2027", f"{LAUNCH_SMALL // per_day:02d}.02.2027")}
    if LAUNCH_BIG // per_day <= 4 * 25:
        plan[LAUNCH_BIG] = ("01.02.2027", "31.05.2027")
    else:
        plan[per_day * 25 * 8] = ("01.12.2026", "31.07.2027")
    return plan


LAUNCH_REASON = "bench: admin_scale launch"
LAUNCH_TARGET_STATUS = 5  # waiting (0) -> cancelled (5) is allowed (subscriptions/rules.py)
PROJECT_APPS = ("subscriptions", "billing", "billqueries", "upstream")  # Django's own are tiny
BIG_LISTS = ("subscriptioninvoice", "jobitem", "upstreamcall")
BIG_API_LISTS = ("subscription-invoices", "upstream-calls")
RATIO_FLOOR_MS = 5.0
FIRST_ROUNDS = 3  # timed rounds per view in the first pass
SLOW_MS = 2000  # a view whose 1M warm-up took longer gets one round in the first pass
BODY_VARIANTS = 997  # distinct long JSON bodies per call kind (a prime, so they interleave)
MAX_API_PAGE = 500  # upstream.api.pagination.MAX_PAGE_SIZE
GOALS = {"worst_p95_ms": 300, "worst_ratio": 1.5, "launch_50k_ms": 1000}


# --- seeding ---------------------------------------------------------------------------------

SEED_FUNCTIONS = r"""
CREATE FUNCTION pg_temp.fname(i bigint) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT (ARRAY['Ahmet','Mehmet','Mustafa','Ali','Hüseyin','Hasan','İbrahim','Murat','Emre',
    'Kerem','Burak','Can','Deniz','Ömer','Yusuf','Oğuz','Serkan','Tolga','Ümit','Cem','Ayşe',
    'Fatma','Emine','Hatice','Zeynep','Elif','Merve','Büşra','Esra','Nazlı','Yağmur','Selin',
    'Ebru','Derya','Gül','Şeyma','Özge','Ceren','İrem','Dilek'])[1 + mod(i, 40)]
$$;
CREATE FUNCTION pg_temp.lname(i bigint) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT (ARRAY['Yılmaz','Kaya','Demir','Şahin','Çelik','Yıldız','Yıldırım','Öztürk','Aydın',
    'Özdemir','Arslan','Doğan','Kılıç','Aslan','Çetin','Kara','Koç','Kurt','Özkan','Şimşek',
    'Polat','Erdoğan','Güneş','Aksoy','Bulut','Korkmaz','Keskin','Çakır','Uçar','Tekin','Akın',
    'Ünal','Güler','Tuna','Sezer','Bozkurt','Avcı','Kaplan','Erol','Taş'])[1 + mod(i / 40, 40)]
$$;
CREATE FUNCTION pg_temp.person(i bigint) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT pg_temp.fname(i) || ' ' || pg_temp.lname(i)
$$;
CREATE FUNCTION pg_temp.ascii(t text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT lower(translate(t, 'ÇĞİÖŞÜçğıöşü ', 'CGIOSUcgiosu.'))
$$;
CREATE FUNCTION pg_temp.uuid_of(t text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT md5(t)::uuid::text
$$;
CREATE FUNCTION pg_temp.local(ts timestamptz, fmt text) RETURNS text LANGUAGE sql STABLE AS $$
  SELECT to_char(ts AT TIME ZONE 'Europe/Istanbul', fmt)
$$;
-- One Paynet payment record as invoice_list returns it (amounts in kurus).
CREATE FUNCTION pg_temp.paynet_record(r bigint) RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object(
    'invoice_id', 1000000 + r, 'invoice_no', (20000000 + r)::text,
    'subscription_id', pg_temp.uuid_of('sub' || (r / 20)),
    'reference_no', (90000000 + r / 20)::text,
    'amount', (99 + mod((r / 20) * 37, 1900)) * 100 + 90, 'agent_amount', 0,
    'company_amount', (99 + mod((r / 20) * 37, 1900)) * 100 + 90, 'currency', 'TRY',
    'val_date', pg_temp.local(TIMESTAMPTZ '2025-12-01 10:00+03'
      + make_interval(months => mod(r, 20)::int, days => mod(r / 20, 25)::int),
      'DD.MM.YYYY HH24:MI:SS'),
    'status', CASE WHEN mod(r, 20) >= 12 THEN 0 ELSE 3 END)
$$;
"""

PAYNET_HEADERS = (
    '{"Accept": "application/json", "Authorization": "***", '
    '"Content-Type": "application/json; charset=UTF-8"}'
)
WISECP_HEADERS = (
    '{"Accept": "application/json", "Apikey": "***", "Content-Type": "application/json"}'
)
PAYOFIN_HEADERS = (
    '{"Accept": "application/json", "ApiKey": "***", "SecretKey": "***", '
    '"Content-Type": "application/json; charset=UTF-8"}'
)


def seed_statements() -> list[tuple[str, str]]:
    """(label, SQL) in order; parameters: see seed().

    Ids are given explicitly so rows can point at each other by formula; the identity sequences
    are moved past them at the end.
    """
    return [
        (
            "users",
            """
            INSERT INTO auth_user (id, password, is_superuser, username, first_name, last_name,
              email, is_staff, is_active, date_joined)
            SELECT u, '!', u = 1, CASE WHEN u = 1 THEN 'bench' ELSE 'operator' || (u - 1) END,
              '', '', '', true, true, %(base)s
            FROM generate_series(1, 6) AS u
            """,
        ),
        (
            "subscriptions",
            """
            INSERT INTO subscriptions_subscription (id, subscription_id, reference_no,
              name_surname, is_fixed_price, amount, agent_id, agent_amount, company_amount,
              currency, interval, interval_count, begin_date, end_user_email, end_user_gsm,
              status, created_date, synced_at)
            SELECT s + 1, pg_temp.uuid_of('sub' || s), (90000000 + s)::text, pg_temp.person(s),
              mod(s / 25, 4) <> 1, a.amount, (3000 + mod(s * 7, 2000))::text, a.agent,
              a.amount - a.agent, 'TRY', CASE WHEN mod(s, 10) = 9 THEN 3 ELSE 2 END, 20,
              a.begin, pg_temp.ascii(pg_temp.person(s)) || s || '@example.com.tr',
              '5' || lpad(mod(s * 7919 + 301234567, 1000000000)::text, 9, '0'),
              CASE WHEN mod(s / 25, 4) = 3 THEN 0 ELSE 1 END,
              a.begin - make_interval(days => 1 + mod(s * 13, 300)::int,
                secs => mod(s * 97, 36000)),
              %(synced)s
            FROM generate_series(0, %(subs)s - 1) AS s,
            LATERAL (SELECT (99 + mod(s * 37, 1900))::numeric + 0.90 AS amount) AS b,
            LATERAL (SELECT b.amount,
              CASE WHEN mod(s, 3) = 0 THEN round(b.amount * 0.05, 2) ELSE 0 END AS agent,
              %(base)s + make_interval(days => mod(s, 25)::int, hours => 10) AS begin) AS a
            """,
        ),
        (
            "payment records",
            """
            INSERT INTO subscriptions_subscriptioninvoice (id, invoice_id, invoice_no, val_date,
              amount, agent_amount, company_amount, currency, status, synced_at, subscription_id)
            SELECT i + 1, (1000000 + i)::text, (20000000 + i)::text,
              %(base)s + make_interval(months => w.k::int, days => w.g::int, hours => 10),
              a.amount, a.agent, a.amount - a.agent, 'TRY',
              CASE
                WHEN w.k >= 12 AND w.cls = 3 THEN 5
                WHEN w.k >= 12 AND w.cls <> 1 AND mod(i, 211) = 3 THEN 6
                WHEN w.k >= 12 THEN 0
                WHEN mod(i * 7, 23) = 0 THEN 4
                WHEN mod(i, 97) = 5 THEN 2
                WHEN w.cls = 3 AND w.k >= 10 THEN 5
                ELSE 3
              END,
              %(synced)s, w.s + 1
            FROM generate_series(0, %(n)s - 1) AS i,
            LATERAL (SELECT i / 20 AS s, mod(i, 20) AS k, mod(i / 20, 25) AS g,
              mod(i / 500, 4) AS cls) AS w,
            LATERAL (SELECT (99 + mod(w.s * 37, 1900))::numeric + 0.90
              + CASE WHEN w.cls = 1 THEN mod(w.k * 13 + w.s, 50) ELSE 0 END AS amount) AS b,
            LATERAL (SELECT b.amount,
              CASE WHEN mod(w.s, 3) = 0 THEN round(b.amount * 0.05, 2) ELSE 0 END AS agent) AS a
            """,
        ),
        (
            "wisecp invoices",
            """
            INSERT INTO billing_invoice (id, wisecp_id, number, status, currency, subtotal, tax,
              total, tax_rate, taxfree, taxation_type, created_at_upstream, due_date,
              payment_date, refund_date, user_id, full_name, company_name, synced_at)
            SELECT b + 1, 300 + b, '#' || (300 + b), v.status,
              CASE WHEN mod(b, 10) = 3 THEN 'USD' WHEN mod(b, 20) = 7 THEN 'EUR' ELSE 'TRY' END,
              0, 0, 0, 20, false, 'exclusive', v.created, v.created + interval '15 days',
              CASE WHEN v.status IN ('paid', 'refunded')
                THEN v.created + make_interval(days => 1 + mod(b, 12)::int) END,
              CASE WHEN v.status = 'refunded' THEN v.created + interval '20 days' END,
              v.customer, pg_temp.person(v.customer * 7),
              CASE WHEN mod(v.customer, 3) = 0
                THEN pg_temp.lname(v.customer * 7) || ' Bilişim A.Ş.' ELSE '' END,
              %(synced)s
            FROM generate_series(0, %(binv)s - 1) AS b,
            LATERAL (SELECT
              (ARRAY['paid','paid','unpaid','paid','paid','cancelled','unpaid','paid','pending',
                'paid','paid','unpaid','paid','paid','refunded','paid','unpaid','paid',
                'cancelled','paid'])[1 + mod(b * 7, 20)] AS status,
              %(base)s + (b::float8 / %(binv)s) * interval '395 days'
                + make_interval(secs => mod(b * 7919, 86400)) AS created,
              1 + mod(b * 7919, greatest(%(binv)s / 5, 1)) AS customer) AS v
            """,
        ),
        (
            "wisecp invoice items",
            """
            INSERT INTO billing_invoiceitem (id, wisecp_id, sequence, description, quantity,
              tax_exempt, amount, total, order_id, due_date, attributes, version, synced_at,
              invoice_id)
            SELECT j + 1, 1500 + j, mod(j, 4) + 1, v.product || ' (' || v.domain || ')', v.qty,
              mod(j, 17) = 5, v.amount, v.amount * v.qty, 1000 + j,
              %(base)s + ((j / 4)::float8 / %(binv)s) * interval '395 days' + interval '1 year',
              jsonb_build_object('event',
                CASE WHEN mod(j, 3) = 0 THEN 'CreateOrder' ELSE 'ExtendOrderPeriod' END,
                'type', v.type, 'period', v.period, 'period_time', 1, 'domain', v.domain),
              1, %(synced)s, j / 4 + 1
            FROM generate_series(0, %(items)s - 1) AS j,
            LATERAL (SELECT mod(j * 3 + j / 4, 8) AS p) AS w,
            LATERAL (SELECT
              (ARRAY['Web Hosting - Aylık','Web Hosting - Yıllık',
                'Kurumsal E-posta - 10 Hesap - Yıllık','Alan Adı Yenileme',
                'SSL Sertifikası - 1 Yıl','VPS - 4 GB RAM - Aylık','Yedekleme Hizmeti',
                'Kurulum Ücreti'])[1 + w.p] AS product,
              (ARRAY['hosting','hosting','email','domain','ssl','server','backup',
                'service'])[1 + w.p] AS type,
              (ARRAY['month','year','year','year','year','month','month','none'])[1 + w.p]
                AS period,
              (ARRAY[149.90, 1199.00, 1199.00, 349.00, 899.00, 749.00, 99.00, 250.00])[1 + w.p]
                AS amount,
              CASE WHEN mod(j, 11) = 4 THEN 2 ELSE 1 END AS qty,
              pg_temp.ascii(pg_temp.lname(j / 4 * 7)) || (j / 4) || '.com.tr' AS domain) AS v
            """,
        ),
        (
            "wisecp invoice totals",
            """
            UPDATE billing_invoice AS inv SET subtotal = x.s, tax = round(x.s * 0.20, 2),
              total = x.s + round(x.s * 0.20, 2)
            FROM (SELECT invoice_id, sum(total) AS s FROM billing_invoiceitem
              GROUP BY invoice_id) AS x
            WHERE inv.id = x.invoice_id
            """,
        ),
        (
            "payofin institutions",
            """
            INSERT INTO billqueries_institution (id, soot_code, name, invoice_type, description,
              field_title, field_description, mask, subscriber_required, additional_no_required,
              partial_amount, active, synced_at)
            SELECT c, c, v.name,
              (ARRAY['Su Faturası','Elektrik Faturası','Doğalgaz Faturası','Telefon Faturası',
                'İnternet Faturası'])[1 + mod(c, 5)],
              v.name || ' fatura tahsilatı', 'Abone Numarası',
              'Faturanın üzerindeki 10 haneli abone numarası', '9999999999', true,
              mod(c, 9) = 4, mod(c, 5) = 0, c <> 37, %(synced)s
            FROM generate_series(1, 40) AS c,
            LATERAL (SELECT coalesce((ARRAY['İSKİ','ASKİ','İZSU','CK Boğaziçi Elektrik',
              'Enerjisa Başkent','İGDAŞ','Başkentgaz','Türk Telekom','TTNET',
              'Superonline'])[c], 'Kurum ' || c) AS name) AS v
            """,
        ),
        (
            "bill query batches",
            """
            INSERT INTO billqueries_billquerybatch (id, state, source, filename, created_at,
              finished_at, line_count, found_count, no_debt_count, failed_count, debt_count,
              debt_total, created_by_id, job_id)
            SELECT q + 1,
              CASE WHEN q = %(batches)s - 1 THEN 'running' WHEN mod(q, 53) = 7 THEN 'failed'
                ELSE 'finished' END,
              v.source,
              CASE WHEN v.source IN ('csv', 'xlsx')
                THEN 'borclar-' || pg_temp.local(v.created, 'YYYYMMDD') || '.' || v.source
                ELSE '' END,
              v.created,
              CASE WHEN q < %(batches)s - 1 THEN v.created + interval '40 seconds' END,
              50, 0, 0, 0, 0, 0, 2 + mod(q, 5), NULL
            FROM generate_series(0, %(batches)s - 1) AS q,
            LATERAL (SELECT (ARRAY['typed','pasted','csv','xlsx','api'])[1 + mod(q, 5)] AS source,
              %(base)s + (q::float8 / %(batches)s) * interval '395 days'
                + make_interval(secs => mod(q * 7919, 86400)) AS created) AS v
            """,
        ),
        (
            "bill query lines",
            """
            INSERT INTO billqueries_billqueryline (id, position, soot_code, subscriber_no,
              additional_no, firm_ref_no, attempt, state, result, result_code, result_message,
              outcome, queried_at, debt_count, debt_total, batch_id, job_item_id,
              institution_id)
            SELECT l + 1, mod(l, 50) + 1, v.c,
              lpad(mod(l::bigint * 7919 + 1234567, 10000000000)::text, 10, '0'), '',
              'Q' || upper(to_hex(l + 1)) || '01', 1, 'done', v.outcome = 'found',
              CASE v.outcome WHEN 'found' THEN 1 WHEN 'no_debt' THEN -1 ELSE -14 END,
              CASE v.outcome WHEN 'found' THEN 'İşlem Başarılı'
                WHEN 'no_debt' THEN 'Abone Numarasına Ait Borç Kaydı Bulunmamaktadır'
                ELSE 'Geçersiz abone numarası.' END,
              v.outcome,
              %(base)s + ((l / 50)::float8 / %(batches)s) * interval '395 days'
                + make_interval(secs => mod((l / 50) * 7919, 86400) + 30),
              CASE WHEN v.outcome = 'found' THEN 1 ELSE 0 END,
              CASE WHEN v.outcome = 'found' THEN (50 + mod(l * 37, 2000))::numeric + 0.48
                ELSE 0 END,
              l / 50 + 1, NULL, v.c
            FROM generate_series(0, %(lines)s - 1) AS l,
            LATERAL (SELECT 1 + mod(l * 7, 40) AS c,
              CASE WHEN mod(l, 20) < 9 THEN 'found' WHEN mod(l, 20) < 18 THEN 'no_debt'
                ELSE 'failed' END AS outcome) AS v
            """,
        ),
        (
            "bill debts",
            """
            INSERT INTO billqueries_billdebt (id, invoice_query_id, subscriber_no, customer_name,
              invoice_no, exp_date, invoice_amount, merchant_profit, total_amount, soot_code,
              line_id)
            SELECT id, 600000 + id, subscriber_no,
              upper(left(pg_temp.fname(id), 2)) || '*** ' || upper(left(pg_temp.lname(id), 2))
                || '****',
              (400000000000 + id * 7)::text, (queried_at + interval '10 days')::date,
              debt_total - 2, 2, debt_total, soot_code, id
            FROM billqueries_billqueryline WHERE outcome = 'found'
            """,
        ),
        (
            "bill query batch counts",
            """
            UPDATE billqueries_billquerybatch AS b SET found_count = x.found,
              no_debt_count = x.no_debt, failed_count = x.failed, debt_count = x.debts,
              debt_total = x.total
            FROM (SELECT batch_id, count(*) FILTER (WHERE outcome = 'found') AS found,
                count(*) FILTER (WHERE outcome = 'no_debt') AS no_debt,
                count(*) FILTER (WHERE outcome = 'failed') AS failed,
                sum(debt_count) AS debts, sum(debt_total) AS total
              FROM billqueries_billqueryline GROUP BY batch_id) AS x
            WHERE b.id = x.batch_id
            """,
        ),
        (
            "jobs",
            """
            INSERT INTO upstream_job (id, kind, title, state, params, reason, created_at,
              started_at, finished_at, heartbeat_at, total, succeeded, failed, cancelled,
              skipped, cancel_requested, task_id, created_by_id, idempotency_key, inline,
              cancelled_by_id, retried_at, retried_by_id, selection, rejection_reason)
            SELECT j + 1, v.kind,
              CASE v.kind
                WHEN 'paynet.invoice_status' THEN CASE WHEN w.inline
                  THEN (20000000 + mod(j * 7919, %(n)s)) || ' ödeme kaydını “İptal edildi” yap'
                  ELSE v.total || ' ödeme kaydını “İptal edildi” yap' END
                WHEN 'paynet.create_invoice' THEN pg_temp.person(mod(j * 31, %(subs)s))
                  || ' için 9' || lpad(j::text, 9, '0') || ' ödeme kaydı oluştur'
                WHEN 'paynet.subscription_status_all'
                  THEN v.total || ' aboneliğin tüm ödeme kayıtlarını “İptal edildi” yap'
                WHEN 'wisecp.invoice_item_update' THEN CASE WHEN w.inline
                  THEN 'Kalem #' || (1500 + mod(j * 13, %(items)s)) || ' fatura kalemini güncelle'
                  ELSE v.total || ' fatura kaleminin son ödeme tarihini 15.01.2027 olarak belirle'
                  END
                ELSE 'Fatura sorguları: toplu sorgu #' || (1 + mod(j, %(batches)s)) || ', '
                  || v.total || ' satır'
              END,
              v.state,
              CASE WHEN v.kind = 'payofin.bill_query'
                THEN jsonb_build_object('batch_id', 1 + mod(j, %(batches)s), 'lines', v.total)
                ELSE jsonb_build_object('status', 5) END,
              v.reason, v.created, v.created + interval '1 second',
              CASE WHEN v.state NOT IN ('queued', 'running')
                THEN v.created + v.total * interval '60 milliseconds' + interval '2 seconds' END,
              CASE WHEN v.state <> 'queued'
                THEN v.created + v.total * interval '30 milliseconds' END,
              v.total, 0, 0, 0, 0, v.state = 'cancelled', pg_temp.uuid_of('task' || j),
              2 + mod(j, 5), '', w.inline,
              CASE WHEN v.state = 'cancelled' THEN 2 + mod(j + 1, 5) END, NULL, NULL, '', ''
            FROM generate_series(0, %(jobs)s - 1) AS j,
            LATERAL (SELECT mod(j, 5) < 3 AS inline) AS w,
            LATERAL (SELECT
              CASE WHEN w.inline THEN 1
                -- the jobs still queued or running: the same size at both scales
                WHEN j IN (%(jobs)s - 1, %(jobs)s - 2, %(jobs)s - 6) THEN 200
                WHEN mod((j / 5) * 2 + mod(j, 5) - 3, 2) = 0 THEN %(bulk_b)s
                ELSE %(bulk_a)s END AS total,
              CASE WHEN w.inline THEN (CASE mod(j, 10) WHEN 0 THEN 'wisecp.invoice_item_update'
                  WHEN 1 THEN 'paynet.create_invoice' ELSE 'paynet.invoice_status' END)
                ELSE (CASE mod(j, 20) WHEN 3 THEN 'payofin.bill_query'
                  WHEN 4 THEN 'wisecp.invoice_item_update'
                  WHEN 8 THEN 'paynet.subscription_status_all'
                  ELSE 'paynet.invoice_status' END) END AS kind,
              CASE
                WHEN j = %(jobs)s - 1 THEN 'queued'
                WHEN j IN (%(jobs)s - 2, %(jobs)s - 6) THEN 'running'
                WHEN w.inline AND mod(j, 50) = 7 THEN 'failed'
                WHEN NOT w.inline AND mod(j, 85) = 13 THEN 'partially_failed'
                WHEN NOT w.inline AND mod(j, 205) = 39 THEN 'cancelled'
                ELSE 'succeeded' END AS state,
              (ARRAY['Müşteri talebi','Mükerrer kayıt','Abonelik iptali','Fiyat düzeltmesi',
                'Kampanya sonu toplu iptal','Vade güncellemesi',
                'Aylık borç sorgusu'])[1 + mod(j * 3, 7)] AS reason,
              %(base)s + (j::float8 / %(jobs)s) * interval '395 days'
                + make_interval(secs => mod(j * 7919, 86400)) AS created) AS v
            """,
        ),
        (
            "job items",
            """
            INSERT INTO upstream_jobitem (id, position, target_type, target_id, target_repr,
              payload, state, outcome, in_doubt, message, upstream_code, result, attempts,
              claimed_by, lease_until, finished_at, job_id, call_id)
            SELECT w.x, p, t.type, t.id, t.repr, t.payload, o.state, o.outcome,
              o.outcome = 'in_doubt',
              CASE o.outcome
                WHEN 'rejected' THEN CASE jb.kind
                  WHEN 'wisecp.invoice_item_update' THEN 'Invoice item could not be updated'
                  WHEN 'payofin.bill_query' THEN 'Geçersiz istek.'
                  ELSE 'Fatura durumu bu duruma güncellenemez.' END
                WHEN 'in_doubt' THEN 'Cevap alınamadı (zaman aşımı); kayıt okunarak doğrulanacak.'
                WHEN 'skipped' THEN 'Kayıt önizlemeden sonra değişti: durum “Tahsil edildi”.'
                ELSE '' END,
              CASE o.outcome WHEN 'rejected' THEN CASE jb.kind
                  WHEN 'wisecp.invoice_item_update' THEN 'error'
                  WHEN 'payofin.bill_query' THEN '-24' ELSE '8' END
                ELSE '' END,
              CASE WHEN o.outcome = 'ok' AND jb.kind LIKE 'paynet.%%'
                THEN jsonb_build_object('status', 5, 'code', 0)
                WHEN o.outcome = 'ok' THEN jsonb_build_object('updated', true)
                ELSE '{}'::jsonb END,
              CASE WHEN o.state = 'pending' THEN 0 ELSE 1 END,
              CASE WHEN o.state = 'sending' THEN 'worker-1:4242:' || jb.id ELSE '' END,
              CASE WHEN o.state = 'sending' THEN jb.created_at + interval '2 minutes' END,
              CASE WHEN o.state = 'done' THEN jb.created_at + p * interval '60 milliseconds' END,
              jb.id,
              CASE WHEN o.state = 'done' AND o.outcome IN ('ok', 'rejected', 'in_doubt')
                AND mod(w.x, 10) < 5 THEN w.x END
            FROM (SELECT id, kind, state, total, created_at,
                sum(total) OVER (ORDER BY id) - total AS off FROM upstream_job) AS jb,
            generate_series(1, jb.total) AS p,
            LATERAL (SELECT jb.off + p AS x) AS w,
            LATERAL (SELECT
              CASE
                WHEN jb.state = 'queued' THEN 'pending'
                WHEN jb.state = 'running' AND p > jb.total / 3 + 16 THEN 'pending'
                WHEN jb.state = 'running' AND p > jb.total / 3 THEN 'sending'
                ELSE 'done' END AS state,
              CASE
                WHEN jb.state = 'queued' OR (jb.state = 'running' AND p > jb.total / 3) THEN ''
                WHEN jb.state = 'failed' THEN 'rejected'
                WHEN jb.state = 'cancelled' AND p > jb.total / 2 THEN 'cancelled'
                -- Exceptions come in about the same number at both sizes (see seed()).
                WHEN jb.total > 1 AND jb.state IN ('succeeded', 'partially_failed')
                  AND mod(w.x, %(doubt_every)s) = 0 THEN 'in_doubt'
                WHEN jb.total > 1 AND jb.state IN ('succeeded', 'partially_failed')
                  AND mod(w.x, %(reject_every)s) = 7 THEN 'rejected'
                WHEN jb.state = 'succeeded' AND jb.total > 1 AND mod(w.x, 151) = 0 THEN 'skipped'
                ELSE 'ok' END AS outcome) AS o,
            LATERAL (SELECT mod(w.x * 7919, %(n)s) AS r, mod(w.x * 31, %(subs)s) AS s,
              mod(w.x * 13, %(items)s) AS m, mod(w.x, %(batches)s) AS q) AS z,
            LATERAL (SELECT
              CASE jb.kind
                WHEN 'paynet.invoice_status' THEN 'subscriptions.subscriptioninvoice'
                WHEN 'wisecp.invoice_item_update' THEN 'billing.invoiceitem'
                WHEN 'payofin.bill_query' THEN 'billqueries.billquerybatch'
                ELSE 'subscriptions.subscription' END AS type,
              (CASE jb.kind
                WHEN 'paynet.invoice_status' THEN z.r
                WHEN 'wisecp.invoice_item_update' THEN z.m
                WHEN 'payofin.bill_query' THEN z.q
                ELSE z.s END + 1)::text AS id,
              CASE jb.kind
                WHEN 'paynet.invoice_status' THEN (20000000 + z.r)::text
                WHEN 'wisecp.invoice_item_update' THEN '#' || (300 + z.m / 4) || ' · Kalem #'
                  || (1500 + z.m)
                WHEN 'payofin.bill_query' THEN 'Toplu sorgu #' || (z.q + 1) || ', satır '
                  || (mod(p - 1, 4) * 15 + 1) || '–' || least(mod(p - 1, 4) * 15 + 15, 50)
                ELSE (90000000 + z.s) || ' ' || pg_temp.person(z.s) END AS repr,
              CASE jb.kind
                WHEN 'paynet.invoice_status' THEN jsonb_build_object(
                  'invoice_id', (1000000 + z.r)::text, 'invoice_no', (20000000 + z.r)::text,
                  'subscription_id', pg_temp.uuid_of('sub' || (z.r / 20)), 'status', 5,
                  'from_status', 0, 'amount', ((99 + mod((z.r / 20) * 37, 1900)) + 0.90)::text)
                WHEN 'wisecp.invoice_item_update' THEN jsonb_build_object(
                  'item_id', 1500 + z.m, 'invoice_id', 300 + z.m / 4,
                  'changes', jsonb_build_object('due_date', '2027-01-15 23:59:00'),
                  'version', 1, 'summary', '15.01.2026 → 15.01.2027')
                WHEN 'payofin.bill_query' THEN jsonb_build_object(
                  'batch_id', z.q + 1, 'line_ids', jsonb_build_array(z.q * 50 + 1, z.q * 50 + 2,
                    z.q * 50 + 3, z.q * 50 + 4, z.q * 50 + 5))
                WHEN 'paynet.create_invoice' THEN jsonb_build_object(
                  'subscription_id', pg_temp.uuid_of('sub' || z.s),
                  'invoice_no', '9' || lpad(w.x::text, 9, '0'),
                  'val_date', '2027-01-10T10:00:00+03:00', 'amount', '750.00',
                  'agent_amount', NULL, 'company_amount', NULL, 'generated', true,
                  'allow_duplicate', false)
                ELSE jsonb_build_object('subscription_id', pg_temp.uuid_of('sub' || z.s),
                  'status', 5, 'reference_no', (90000000 + z.s)::text,
                  'seen', jsonb_build_object((1000000 + z.s * 20 + 12)::text, 0,
                    (1000000 + z.s * 20 + 13)::text, 0, (1000000 + z.s * 20 + 14)::text, 0))
              END AS payload) AS t
            """,
        ),
        (
            "job counts",
            """
            UPDATE upstream_job AS jb SET succeeded = x.ok, failed = x.failed,
              cancelled = x.cancelled, skipped = x.skipped,
              state = CASE WHEN jb.state = 'succeeded' AND x.failed > 0
                THEN 'partially_failed' ELSE jb.state END
            FROM (SELECT job_id, count(*) FILTER (WHERE outcome = 'ok') AS ok,
                count(*) FILTER (WHERE outcome IN ('rejected', 'failed', 'in_doubt')) AS failed,
                count(*) FILTER (WHERE outcome = 'cancelled') AS cancelled,
                count(*) FILTER (WHERE outcome = 'skipped') AS skipped
              FROM upstream_jobitem GROUP BY job_id) AS x
            WHERE jb.id = x.job_id
            """,
        ),
        (
            "big jobs",
            # Issue 20: a job's page at 500 and at 50,000 items, and the approver's page of a
            # bulk job of 50,000 records (its selection frozen, no items written yet): the same
            # three jobs at every size, after the others (ids jobs + 1, + 2, + 3).
            """
            INSERT INTO upstream_job (id, kind, title, state, params, reason, created_at,
              started_at, finished_at, heartbeat_at, total, succeeded, failed, cancelled,
              skipped, cancel_requested, task_id, created_by_id, idempotency_key, inline,
              cancelled_by_id, retried_at, retried_by_id, selection, rejection_reason, prepared,
              amount, approval_expires_at)
            SELECT %(jobs)s + b.k, 'paynet.invoice_status',
              b.total || ' ödeme kaydını “İptal edildi” yap', b.state,
              jsonb_build_object('status', 5), 'Kampanya sonu toplu iptal',
              %(synced)s - make_interval(hours => 4 - b.k),
              %(synced)s - make_interval(hours => 4 - b.k),
              CASE WHEN b.state = 'succeeded' THEN %(synced)s END,
              CASE WHEN b.state = 'succeeded' THEN %(synced)s END,
              b.total, CASE WHEN b.state = 'succeeded' THEN b.total ELSE 0 END, 0, 0, 0, false,
              pg_temp.uuid_of('bigjob' || b.k), 3, '', false, NULL, NULL, NULL,
              CASE WHEN b.state = 'awaiting_approval' THEN (SELECT string_agg(r || ':0', ','
                ORDER BY r) FROM generate_series(1, b.total) AS r) ELSE '' END, '',
              CASE WHEN b.state = 'awaiting_approval' THEN 0 END,
              CASE WHEN b.state = 'awaiting_approval' THEN b.total * 149.90 END,
              CASE WHEN b.state = 'awaiting_approval' THEN %(synced)s + interval '100 years' END
            FROM (VALUES (1, 500, 'succeeded'), (2, 50000, 'succeeded'),
              (3, 50000, 'awaiting_approval')) AS b(k, total, state)
            """,
        ),
        (
            "big job items",
            """
            INSERT INTO upstream_jobitem (id, position, target_type, target_id, target_repr,
              payload, state, outcome, in_doubt, message, upstream_code, result, attempts,
              claimed_by, lease_until, finished_at, job_id, call_id)
            SELECT m.top + row_number() OVER (ORDER BY jb.id, p), p,
              'subscriptions.subscriptioninvoice', (z.r + 1)::text, (20000000 + z.r)::text,
              jsonb_build_object('invoice_id', (1000000 + z.r)::text,
                'invoice_no', (20000000 + z.r)::text, 'status', 5, 'from_status', 0),
              'done', 'ok', false, '', '', jsonb_build_object('status', 5, 'code', 0), 1, '',
              NULL, jb.created_at + p * interval '60 milliseconds', jb.id, NULL
            FROM (SELECT max(id) AS top FROM upstream_jobitem) AS m,
            upstream_job AS jb, generate_series(1, jb.total) AS p,
            LATERAL (SELECT mod(p * 7919, %(n)s) AS r) AS z
            WHERE jb.id IN (%(jobs)s + 1, %(jobs)s + 2)
            """,
        ),
        (
            "call body templates",
            # The long JSON bodies come from BODY_VARIANTS templates (realistic, varied by v);
            # building ~1 KB of JSON per row for a million rows would take minutes.
            """
            CREATE TEMP TABLE bench_bodies AS
            SELECT v,
              jsonb_build_object('object_name', 'subscription_invoice_list', 'code', 0,
                'message', 'Başarılı Islem', 'total', 20, 'total_count', 20, 'limit', 100,
                'ending_before', 0, 'starting_after', 20, 'has_more', false,
                'data', jsonb_build_array(pg_temp.paynet_record(v * 20 + 10),
                  pg_temp.paynet_record(v * 20 + 11), pg_temp.paynet_record(v * 20 + 12),
                  pg_temp.paynet_record(v * 20 + 13))) AS paynet_list,
              jsonb_build_object('status', 'successful',
                'data', jsonb_build_object('id', 300 + v, 'number', '#' || (300 + v),
                  'user', jsonb_build_object('id', 1 + mod(v * 7919, 5000),
                    'lang', 'tr', 'type', 'individual',
                    'full_name', pg_temp.person(v * 7),
                    'email', pg_temp.ascii(pg_temp.person(v * 7)) || '@hotmail.com',
                    'phone', '90503' || lpad(mod(v * 7919, 10000000)::text, 7, '0'),
                    'company_name', '', 'address', jsonb_build_object('country_code', 'TR',
                      'city', 'Konya', 'state', 'Selçuklu',
                      'detail', 'Cumhuriyet Mah. No:' || (1 + mod(v, 200)),
                      'zipcode', '42' || lpad(mod(v, 1000)::text, 3, '0'))),
                  'taxation_type', 'exclusive', 'notes', '', 'status', 'paid',
                  'created_at', '2026-03-13 19:10:17', 'due_date', '2026-03-16 23:59:00',
                  'currency', 'TRY', 'tax_rate', 20, 'subtotal', 1348.9, 'tax', 269.78,
                  'total', 1618.68, 'payment_method', 'Kredi Kartı (Paynet)',
                  'share', jsonb_build_object('token', '***'),
                  'items', jsonb_build_array(
                    jsonb_build_object('id', 1500 + v * 4, 'sequence', 1,
                      'description', 'Kurumsal E-posta - 10 Hesap - Yıllık', 'quantity', 1,
                      'tax_exempt', false, 'amount', 1199.0, 'total', 1199.0,
                      'order_id', 1257, 'due_date', '2027-03-12 19:10:17',
                      'attributes', jsonb_build_object('event', 'ExtendOrderPeriod',
                        'type', 'email', 'period', 'year', 'period_time', 1)),
                    jsonb_build_object('id', 1501 + v * 4, 'sequence', 2,
                      'description', 'Web Hosting - Aylık', 'quantity', 1,
                      'tax_exempt', false, 'amount', 149.9, 'total', 149.9,
                      'order_id', 1881, 'due_date', '2026-04-12 19:10:17',
                      'attributes', jsonb_build_object('event', 'CreateOrder',
                        'type', 'hosting', 'period', 'month', 'period_time', 1)))))
                AS wisecp_invoice,
              (SELECT jsonb_build_object('invoiceQueryList', jsonb_agg(jsonb_build_object(
                  'sootCode', (1 + mod(v + q, 40))::text,
                  'subscriberNo', lpad(mod((v * 15 + q) * 7919, 10000000000)::text, 10, '0'),
                  'additionalNo', '', 'firmRefNo', 'Q' || upper(to_hex(v * 15 + q)) || '01')))
                FROM generate_series(1, 15) AS q) AS payofin_query,
              (SELECT jsonb_build_object('invoices', jsonb_agg(
                  CASE WHEN mod(v + q, 2) = 0 THEN jsonb_build_object(
                    'invoiceList', jsonb_build_array(jsonb_build_object(
                      'invoiceQueryId', 600000 + v * 15 + q,
                      'subscriberNo', lpad(mod((v * 15 + q) * 7919, 10000000000)::text, 10, '0'),
                      'customerName', upper(left(pg_temp.fname(v + q), 2)) || '*** '
                        || upper(left(pg_temp.lname(v * 40 + q), 2)) || '****',
                      'invoiceNo', (400000000000 + v * 15 + q)::text,
                      'expDate', '09.12.2026', 'invoiceAmount', 50 + mod(v * 37 + q, 2000),
                      'merchantProfit', 2.0, 'totalAmount', 52 + mod(v * 37 + q, 2000),
                      'sootCode', 1 + mod(v + q, 40))),
                    'result', true, 'resultCode', 1, 'resultMessage', 'İşlem Başarılı')
                  ELSE jsonb_build_object('invoiceList', '[]'::jsonb, 'result', false,
                    'resultCode', -1,
                    'resultMessage', 'Abone Numarasına Ait Borç Kaydı Bulunmamaktadır') END))
                FROM generate_series(1, 15) AS q) AS payofin_answer
            FROM generate_series(0, %(variants)s - 1) AS v
            """,
        ),
        (
            "upstream calls of job items",
            """
            INSERT INTO upstream_upstreamcall (id, service, operation, method, url,
              request_headers, request, status_code, response, upstream_code, upstream_message,
              outcome, error, duration_ms, attempt, mutating, created_at, target_type,
              target_id, target_repr, actor_id, job_id, job_item_id)
            SELECT it.id, k.service, k.operation, k.method, k.url, k.headers::jsonb, k.request,
              CASE WHEN it.outcome = 'in_doubt' THEN NULL
                WHEN it.outcome = 'rejected' AND k.service = 'wisecp' THEN 400 ELSE 200 END,
              CASE WHEN it.outcome = 'in_doubt' THEN NULL
                WHEN it.outcome = 'rejected' THEN k.refusal ELSE k.answer END,
              CASE WHEN it.outcome = 'in_doubt' THEN '' ELSE coalesce(nullif(it.upstream_code, ''),
                CASE k.service WHEN 'paynet' THEN '0' WHEN 'wisecp' THEN 'successful'
                  ELSE '1' END) END,
              CASE WHEN it.outcome = 'ok' THEN CASE k.service WHEN 'paynet' THEN 'Başarılı Islem'
                  WHEN 'payofin' THEN '15 sonuç; kodlar 1×7, -1×8' ELSE '' END
                WHEN it.outcome = 'rejected' THEN it.message ELSE '' END,
              it.outcome,
              CASE WHEN it.outcome = 'in_doubt' THEN 'ReadTimeout: HTTPSConnectionPool(host='''
                || k.host || ''', port=443): Read timed out. (read timeout=15)' ELSE '' END,
              k.duration, 1, true, it.finished_at - k.duration * interval '1 millisecond',
              it.target_type, it.target_id, it.target_repr, jb.created_by_id, jb.id, it.id
            FROM upstream_jobitem AS it
            JOIN upstream_job AS jb ON jb.id = it.job_id
            JOIN bench_bodies AS b ON b.v = mod(it.id, %(variants)s),
            LATERAL (SELECT
              CASE jb.kind WHEN 'wisecp.invoice_item_update' THEN 'wisecp'
                WHEN 'payofin.bill_query' THEN 'payofin' ELSE 'paynet' END AS service,
              CASE jb.kind WHEN 'paynet.invoice_status' THEN 'invoice_status_update'
                WHEN 'paynet.create_invoice' THEN 'create_invoice'
                WHEN 'paynet.subscription_status_all' THEN 'invoices_status_update_all'
                WHEN 'wisecp.invoice_item_update' THEN 'UpdateInvoiceItem'
                ELSE 'multipleinvoicequery' END AS operation,
              CASE jb.kind WHEN 'wisecp.invoice_item_update' THEN 'PUT' ELSE 'POST' END AS method,
              CASE jb.kind WHEN 'wisecp.invoice_item_update' THEN 'billing.example.com.tr'
                WHEN 'payofin.bill_query' THEN 'api.payofin.com'
                ELSE 'api.paynet.com.tr' END AS host,
              40 + mod(it.id * 13, 400) AS duration) AS h,
            LATERAL (SELECT h.*,
              CASE h.service WHEN 'paynet' THEN %(paynet_headers)s
                WHEN 'wisecp' THEN %(wisecp_headers)s ELSE %(payofin_headers)s END AS headers,
              CASE jb.kind
                WHEN 'wisecp.invoice_item_update' THEN
                  'https://billing.example.com.tr/api/Billing/UpdateInvoiceItem/'
                  || (it.payload->>'item_id')
                WHEN 'payofin.bill_query' THEN 'https://api.payofin.com/invoices/' || h.operation
                ELSE 'https://api.paynet.com.tr/v1/subscription/' || h.operation END AS url,
              CASE jb.kind
                WHEN 'paynet.invoice_status' THEN jsonb_build_object(
                  'invoice_id', it.payload->'invoice_id', 'invoice_no', it.payload->'invoice_no',
                  'status', 5)
                WHEN 'paynet.create_invoice' THEN jsonb_build_object(
                  'subscription_id', it.payload->'subscription_id',
                  'invoice_no', it.payload->'invoice_no', 'val_date', '10.01.2027 10:00:00',
                  'amount', 75000, 'agent_amount', 0, 'company_amount', 75000,
                  'currency', 'TRY')
                WHEN 'paynet.subscription_status_all' THEN jsonb_build_object(
                  'subscription_id', it.payload->'subscription_id', 'status', 5)
                WHEN 'wisecp.invoice_item_update' THEN jsonb_build_object(
                  'due_date', '2027-01-15 23:59:00')
                ELSE b.payofin_query
              END AS request,
              CASE jb.kind
                WHEN 'wisecp.invoice_item_update' THEN jsonb_build_object('status', 'successful',
                  'data', jsonb_build_object('id', it.payload->'item_id', 'sequence', 1,
                    'owner_id', it.payload->'invoice_id',
                    'description', 'Web Hosting - Aylık (' || it.target_repr || ')',
                    'quantity', 1, 'tax_exempt', false, 'amount', 149.9, 'total', 149.9,
                    'order_id', 1881, 'due_date', '2027-01-15 23:59:00',
                    'attributes', jsonb_build_object('event', 'ExtendOrderPeriod',
                      'type', 'hosting', 'period', 'month', 'period_time', 1)))
                WHEN 'payofin.bill_query' THEN b.payofin_answer
                ELSE jsonb_build_object('object_name', 'subscription_' || h.operation, 'code', 0,
                  'message', 'Başarılı Islem')
              END AS answer,
              CASE h.service
                WHEN 'wisecp' THEN jsonb_build_object('status', 'error',
                  'message', 'Invoice item could not be updated')
                WHEN 'payofin' THEN jsonb_build_object('result', false, 'resultCode', -24,
                  'resultMessage', 'Geçersiz istek.')
                ELSE jsonb_build_object('object_name', 'subscription_' || h.operation,
                  'code', 8, 'message', 'Fatura durumu bu duruma güncellenemez.')
              END AS refusal) AS k
            WHERE it.call_id IS NOT NULL
            """,
        ),
        (
            "upstream calls of syncs",
            """
            INSERT INTO upstream_upstreamcall (id, service, operation, method, url,
              request_headers, request, status_code, response, upstream_code, upstream_message,
              outcome, error, duration_ms, attempt, mutating, created_at, target_type,
              target_id, target_repr, actor_id, job_id, job_item_id)
            SELECT c, h.service, h.operation, h.method, h.url, h.headers::jsonb, h.request,
              CASE h.outcome WHEN 'failed' THEN NULL WHEN 'rejected' THEN 500 ELSE 200 END,
              CASE h.outcome WHEN 'failed' THEN NULL WHEN 'rejected' THEN jsonb_build_object(
                'code', 99, 'message', 'Sistem hatası, lütfen daha sonra tekrar deneyiniz.')
                ELSE h.answer END,
              CASE h.outcome WHEN 'ok' THEN h.ok_code WHEN 'rejected' THEN '99' ELSE '' END,
              CASE h.outcome WHEN 'ok' THEN h.ok_message
                WHEN 'rejected' THEN 'Sistem hatası, lütfen daha sonra tekrar deneyiniz.'
                ELSE '' END,
              h.outcome,
              CASE WHEN h.outcome = 'failed' THEN 'ConnectTimeout: HTTPSConnectionPool(host='''
                || h.host || ''', port=443): Max retries exceeded (connect timeout=3.05)'
                ELSE '' END,
              30 + mod(c * 17, 600), CASE WHEN mod(c, 211) = 0 THEN 2 ELSE 1 END, false,
              %(base)s + (c::float8 / %(n)s) * interval '395 days', h.target_type, h.target_id,
              h.target_repr, NULL, NULL, NULL
            FROM generate_series(1, %(n)s) AS c
            LEFT JOIN upstream_jobitem AS it ON it.call_id = c
            JOIN bench_bodies AS b ON b.v = mod(c, %(variants)s),
            LATERAL (SELECT CASE WHEN mod(c, 10) = 8 THEN 'wisecp'
                WHEN mod(c, 10) = 9 THEN 'payofin' ELSE 'paynet' END AS service,
              CASE WHEN mod(c, 997) = 0 THEN 'failed'
                WHEN mod(c, %(call_reject_every)s) = 0 THEN 'rejected' ELSE 'ok' END AS outcome,
              mod(c * 31, %(subs)s) AS s, mod(c * 7, %(binv)s) AS b,
              mod(c, %(batches)s) AS q) AS v,
            LATERAL (SELECT v.service, v.outcome,
              CASE v.service WHEN 'paynet' THEN 'invoice_list' WHEN 'wisecp' THEN 'GetInvoice'
                ELSE 'multipleinvoicequery' END AS operation,
              CASE v.service WHEN 'paynet' THEN 'POST' WHEN 'wisecp' THEN 'GET' ELSE 'POST' END
                AS method,
              CASE v.service WHEN 'paynet' THEN 'api.paynet.com.tr'
                WHEN 'wisecp' THEN 'billing.example.com.tr' ELSE 'api.payofin.com' END AS host,
              CASE v.service
                WHEN 'paynet' THEN 'https://api.paynet.com.tr/v1/subscription/invoice_list'
                WHEN 'wisecp' THEN 'https://billing.example.com.tr/api/Billing/GetInvoice/'
                  || (300 + v.b)
                ELSE 'https://api.payofin.com/invoices/multipleinvoicequery' END AS url,
              CASE v.service WHEN 'paynet' THEN %(paynet_headers)s
                WHEN 'wisecp' THEN %(wisecp_headers)s ELSE %(payofin_headers)s END AS headers,
              CASE v.service WHEN 'paynet' THEN 'subscriptions.subscription'
                WHEN 'wisecp' THEN 'billing.invoice' ELSE 'billqueries.billquerybatch' END
                AS target_type,
              (CASE v.service WHEN 'paynet' THEN v.s WHEN 'wisecp' THEN v.b ELSE v.q END
                + 1)::text AS target_id,
              CASE v.service WHEN 'paynet' THEN (90000000 + v.s) || ' ' || pg_temp.person(v.s)
                WHEN 'wisecp' THEN '#' || (300 + v.b)
                ELSE 'Toplu sorgu #' || (v.q + 1) || ', satır 1–15' END AS target_repr,
              CASE v.service WHEN 'paynet' THEN '0' WHEN 'wisecp' THEN 'successful' ELSE '1' END
                AS ok_code,
              CASE v.service WHEN 'paynet' THEN 'Başarılı Islem' WHEN 'wisecp' THEN ''
                ELSE '15 sonuç; kodlar 1×8, -1×7' END AS ok_message,
              CASE v.service
                WHEN 'paynet' THEN jsonb_build_object('limit', 100, 'starting_after', 0,
                  'subscription_id', pg_temp.uuid_of('sub' || v.s))
                WHEN 'wisecp' THEN NULL
                ELSE b.payofin_query
              END AS request,
              CASE v.service WHEN 'paynet' THEN b.paynet_list WHEN 'wisecp' THEN b.wisecp_invoice
                ELSE b.payofin_answer END AS answer) AS h
            WHERE it.id IS NULL
            """,
        ),
        (
            "record history",
            # Issue 9: 7 field changes per payment record (7M at 1M), spread over the records,
            # and 1,000 at both sizes on record HISTORY_RECORD, whose page and timeline are
            # measured (a record's history does not grow with the table). Statuses, amounts and
            # charge dates, by pushes (with a job and a call), syncs and refreshes.
            """
            INSERT INTO upstream_recordchange (id, content_type_id, object_id, action, field,
              old, new, source, actor_id, reason, job_id, call_id, at)
            SELECT g, ct.id,
              CASE WHEN mod(g, %(history_every)s) = 0 THEN %(history_record)s
                ELSE 1 + mod(g * 7919, %(n)s) END,
              'update', f.field, f.old, f.new, f.source,
              CASE WHEN f.source = 'operation' THEN 2 END,
              CASE WHEN f.source = 'operation' THEN 'Müşteri talebi' ELSE '' END,
              CASE WHEN f.source = 'operation' THEN 1 + mod(g, %(jobs)s) END,
              CASE WHEN f.source = 'operation' THEN 1 + mod(g * 13, %(n)s) END,
              %(base)s + (g::float8 / (7 * %(n)s)) * interval '395 days'
            FROM generate_series(1, 7 * %(n)s) AS g,
            LATERAL (SELECT id FROM django_content_type
              WHERE app_label = 'subscriptions' AND model = 'subscriptioninvoice') AS ct,
            LATERAL (SELECT
              (ARRAY['status', 'status', 'amount', 'val_date', 'status'])[1 + mod(g, 5)] AS field,
              (ARRAY['operation', 'sync', 'refresh', 'operation', 'call'])[1 + mod(g / 5, 5)]
                AS source) AS k,
            LATERAL (SELECT k.field, k.source,
              CASE k.field WHEN 'status' THEN to_jsonb(0)
                WHEN 'amount' THEN to_jsonb((100 + mod(g, 900))::text || '.00')
                ELSE to_jsonb('2026-01-05T07:00:00+00:00'::text) END AS old,
              CASE k.field WHEN 'status' THEN to_jsonb(5)
                WHEN 'amount' THEN to_jsonb((120 + mod(g, 900))::text || '.50')
                ELSE to_jsonb('2026-02-05T07:00:00+00:00'::text) END AS new) AS f
            """,
        ),
        (
            "drift",
            # N / 500 entries (2,000 at 1M): Paynet payment records and WiseCP items, every
            # kind and state.
            """
            INSERT INTO upstream_drift (id, service, content_type_id, object_id, record_label,
              field, expected, found, kind, state, first_seen_at, last_seen_at, resolved_at,
              resolved_by_id, resolution_reason, job_id)
            SELECT d, v.service, ct.id, v.object_id, v.label, v.field,
              to_jsonb(0), to_jsonb(4), v.kind, v.state,
              %(base)s + (d::float8 / %(drift)s) * interval '395 days',
              %(base)s + (d::float8 / %(drift)s) * interval '395 days' + interval '1 hour',
              CASE WHEN v.state <> 'open'
                THEN %(base)s + (d::float8 / %(drift)s) * interval '395 days'
                + interval '1 day' END,
              CASE WHEN v.state <> 'open' THEN 2 END,
              CASE WHEN v.state = 'accepted' THEN 'Paynet panelinden düzeltildi' ELSE '' END,
              NULL
            FROM generate_series(1, %(drift)s) AS d,
            LATERAL (SELECT CASE WHEN mod(d, 4) = 3 THEN 'wisecp' ELSE 'paynet' END AS service,
              (ARRAY['reverted', 'outside_change', 'missing'])[1 + mod(d, 3)] AS kind,
              (ARRAY['open', 'open', 'accepted', 'repushed'])[1 + mod(d / 3, 4)] AS state,
              1 + mod(d * 7919, 10000) AS object_id) AS w,
            LATERAL (SELECT w.service, w.kind, w.state, w.object_id,
              CASE w.service WHEN 'paynet' THEN (20000000 + w.object_id - 1)::text
                ELSE 'Kalem #' || (1500 + w.object_id - 1) END AS label,
              CASE WHEN w.kind = 'missing' THEN ''
                WHEN w.service = 'paynet' THEN 'status' ELSE 'amount' END AS field,
              CASE w.service WHEN 'paynet' THEN 'subscriptioninvoice' ELSE 'invoiceitem' END
                AS model) AS v,
            LATERAL (SELECT id FROM django_content_type
              WHERE app_label = CASE v.service WHEN 'paynet' THEN 'subscriptions'
                ELSE 'billing' END AND model = v.model) AS ct
            """,
        ),
    ]


SEQUENCE_TABLES = (
    "auth_user",
    "subscriptions_subscription",
    "subscriptions_subscriptioninvoice",
    "billing_invoice",
    "billing_invoiceitem",
    "billqueries_institution",
    "billqueries_billquerybatch",
    "billqueries_billqueryline",
    "billqueries_billdebt",
    "upstream_job",
    "upstream_jobitem",
    "upstream_upstreamcall",
    "upstream_recordchange",
    "upstream_drift",
)


def pg_connect(url: str, *, dbname: str | None = None):
    import psycopg

    parts = urlsplit(url)
    return psycopg.connect(
        host=parts.hostname,
        port=parts.port or 5432,
        user=parts.username,
        password=parts.password,
        dbname=dbname or parts.path.lstrip("/"),
        autocommit=True,
    )


def seeded_version(url: str) -> str | None:
    """The SEED_VERSION a finished seed left in the database, or None (missing, unfinished)."""
    import psycopg

    try:
        with pg_connect(url) as conn:
            row = conn.execute(
                "SELECT value FROM bench_scale_meta WHERE key = 'seed_version'"
            ).fetchone()
    except psycopg.Error:
        return None
    return row[0] if row else None


def migrate(url: str, log) -> None:
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "config.settings"}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


# A column added after these statements were written (NOT NULL, no database default) gets its
# type's empty value for the seed, so a new field never breaks seeding a fresh database.
EMPTY_VALUES = {
    "text": "''",
    "character varying": "''",
    "boolean": "false",
    "integer": "0",
    "bigint": "0",
    "smallint": "0",
    "numeric": "0",
    "jsonb": "'{}'::jsonb",
}


def fill_unnamed_columns(conn) -> list[tuple[str, str]]:
    """Give the seeded tables' NOT NULL columns without a default a temporary empty default."""
    from psycopg import sql

    columns = conn.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = ANY(%s) AND is_nullable = 'NO' "
        "AND column_default IS NULL AND column_name <> 'id' AND data_type = ANY(%s) "
        "AND is_generated = 'NEVER'",  # a generated column (a stored search fold) takes none
        [list(SEQUENCE_TABLES), list(EMPTY_VALUES)],
    ).fetchall()
    for table, column, data_type in columns:
        conn.execute(
            sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET DEFAULT {}").format(
                sql.Identifier(table), sql.Identifier(column), sql.SQL(EMPTY_VALUES[data_type])
            )
        )
    return [(table, column) for table, column, _ in columns]


def seed(url: str, n: int, log) -> dict[str, float]:
    """Drop, migrate and fill the database at N records; returns seconds per step."""
    from psycopg import sql
    from psycopg.types.numeric import Int8  # bigint arithmetic everywhere

    fresh_postgres(url)
    started = time.perf_counter()
    migrate(url, log)
    timings = {"migrate": time.perf_counter() - started}
    # Issue 20: every main table grows with N (subscriptions, jobs and drift too); the
    # exceptions staff filter for (items in doubt or refused, refused calls) come in about the
    # same number at both sizes, and the "big jobs" (500 and 50,000 items, a bulk job awaiting
    # approval) are the same three at every size.
    # At least one full page of the API's largest size at every N: a 1M page of 500 jobs
    # (or drift entries) compared with a 10k page of 50 would measure the page, not the table.
    jobs = max(n // 200, FULL_PAGE_ROWS)
    singles, bulk_jobs = jobs * 3 // 5, jobs - jobs * 3 // 5
    # Bulk jobs alternate a and a - 3 items; three unfinished ones have 200 each.
    bulk_a = math.ceil((n - singles - 600) / (bulk_jobs - 3) + 1.5)
    params = {
        "n": n,
        "subs": n // 20,
        "drift": max(n // 500, FULL_PAGE_ROWS),
        # Issue 20: every main table grows with N (1M invoice items in 250,000 invoices, 1M
        # bill query lines in 20,000 batches of 50).
        "binv": n // 4,
        "items": n,
        "batches": n // 50,
        "lines": n,
        "jobs": jobs,
        "bulk_a": bulk_a,
        "bulk_b": bulk_a - 3,
        "doubt_every": n // 150,
        "reject_every": n // 600,
        "call_reject_every": n // 400,
        "base": BASE,
        "synced": SYNCED,
        "paynet_headers": PAYNET_HEADERS,
        "wisecp_headers": WISECP_HEADERS,
        "payofin_headers": PAYOFIN_HEADERS,
        "variants": BODY_VARIANTS,
        "history_record": HISTORY_RECORD,
        "history_every": 7 * n // 1000,
    }
    params = {k: Int8(v) if isinstance(v, int) else v for k, v in params.items()}
    with pg_connect(url) as conn:
        conn.execute("SET TIME ZONE 'Europe/Istanbul'")  # month arithmetic in local time
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET jit = off")  # compiling these big statements costs more than it saves
        conn.execute("SET work_mem = '256MB'")
        conn.execute("SET maintenance_work_mem = '512MB'")
        # The foreign keys hold by construction (ids are formulas of each other): skip the
        # per-row checks. Needs a superuser; without one they run at the commit.
        with contextlib.suppress(Exception):
            conn.execute("SET session_replication_role = replica")
        conn.execute(SEED_FUNCTIONS)
        # One transaction: deferred foreign keys (job item <-> call) hold at its end.
        with conn.transaction():
            # Plain (non-constraint) indexes are built once at the end: much faster than
            # maintaining them row by row. Same names and definitions as the migrations made.
            indexes = conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes i WHERE schemaname = 'public' "
                "AND tablename = ANY(%s) AND NOT EXISTS (SELECT 1 FROM pg_constraint c "
                "WHERE c.conname = i.indexname)",
                [list(SEQUENCE_TABLES)],
            ).fetchall()
            for name, _ in indexes:
                conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
            filled = fill_unnamed_columns(conn)
            for label, statement in seed_statements():
                step = time.perf_counter()
                conn.execute(statement, params)
                timings[label] = time.perf_counter() - step
                print(f"  {label}: {timings[label]:.1f}s", flush=True)
            step = time.perf_counter()
            for _, definition in indexes:
                conn.execute(definition)
            timings["indexes"] = time.perf_counter() - step
            print(f"  indexes: {timings['indexes']:.1f}s", flush=True)
            for table, column in filled:
                conn.execute(
                    sql.SQL("ALTER TABLE {} ALTER COLUMN {} DROP DEFAULT").format(
                        sql.Identifier(table), sql.Identifier(column)
                    )
                )
        for table in SEQUENCE_TABLES:
            conn.execute(
                sql.SQL(
                    "SELECT setval(pg_get_serial_sequence({name}, 'id'), "
                    "(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
                ).format(name=sql.Literal(table), table=sql.Identifier(table))
            )
        step = time.perf_counter()
        conn.execute("VACUUM ANALYZE")
        timings["vacuum analyze"] = time.perf_counter() - step
        conn.execute("CREATE TABLE bench_scale_meta (key text PRIMARY KEY, value text NOT NULL)")
        conn.execute(
            "INSERT INTO bench_scale_meta VALUES ('records', %s), ('seeded_at', %s), "
            "('seed_version', %s)",
            [str(n), datetime.now().isoformat(timespec="seconds"), SEED_VERSION],
        )
    timings["total"] = time.perf_counter() - started
    return timings


def prepare(url: str, n: int, reseed: bool, log) -> dict:
    """Reuse a finished seed of this version, or seed; then migrate, tidy and ANALYZE."""
    import psycopg

    found = None if reseed else seeded_version(url)
    if found == SEED_VERSION:
        started = time.perf_counter()
        migrate(url, log)
        with pg_connect(url) as conn:
            conn.execute(
                "DELETE FROM upstream_jobitem WHERE job_id IN "
                "(SELECT id FROM upstream_job WHERE reason = %s)",
                [LAUNCH_REASON],
            )
            conn.execute("DELETE FROM upstream_job WHERE reason = %s", [LAUNCH_REASON])
            with contextlib.suppress(psycopg.errors.UndefinedTable):  # the launches' task rows
                conn.execute("DELETE FROM django_tasks_database_dbtaskresult")
            conn.execute("VACUUM ANALYZE")
        return {"reused": True, "prepare_s": round(time.perf_counter() - started, 1)}
    why = "--reseed" if reseed else ("not seeded" if found is None else f"seed version {found}")
    print(f"seeding {urlsplit(url).path.lstrip('/')} at {n:,} ({why})", flush=True)
    timings = seed(url, n, log)
    return {"reused": False, "seed_s": {k: round(v, 1) for k, v in timings.items()}}


# --- SQLite (issue 20: the same bench at 10k and 100k) -----------------------------------------
#
# The shapes are described once, in seed_statements() (PostgreSQL SQL). A SQLite database is
# seeded by running them in a scratch PostgreSQL database (BENCH_SCALE_SQLITE_SOURCE_URL) and
# copying its rows into the migrated SQLite file, column by column as Django writes them there:
# the same rows, so the same views and searches measure the same things on both databases.

SQLITE_DIR_ENV = "BENCH_SCALE_SQLITE_DIR"
SQLITE_DIR = ROOT / "var" / "bench"
SQLITE_SOURCE_ENV = "BENCH_SCALE_SQLITE_SOURCE_URL"
SQLITE_SOURCE_URL = "postgres://postgres@127.0.0.1:5432/bench_scale_sqlite_source"
COPY_CHUNK = 20_000


def sqlite_path(url: str) -> str:
    """The file of a sqlite:///... URL (sqlite:////abs/path: an absolute path)."""
    return url.removeprefix("sqlite:///")


def sqlite_connect(url: str):
    import sqlite3

    conn = sqlite3.connect(sqlite_path(url), isolation_level=None, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")  # as config/settings.py opens it
    return conn


def sqlite_seeded_version(url: str) -> str | None:
    import sqlite3

    if not Path(sqlite_path(url)).exists():
        return None
    try:
        with contextlib.closing(sqlite_connect(url)) as conn:
            row = conn.execute(
                "SELECT value FROM bench_scale_meta WHERE key = 'seed_version'"
            ).fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def sqlite_converters(pg_types: dict[str, str]) -> dict[str, Callable[[Any], Any]]:
    """Per PostgreSQL column type, the value as Django's SQLite backend stores it."""
    from datetime import UTC

    def timestamp(value):
        # Django: an aware datetime in UTC, naive, str() ("2026-01-05 07:00:00[.123456]").
        return None if value is None else str(value.astimezone(UTC).replace(tzinfo=None))

    def plain_json(value):
        return None if value is None else json.dumps(value)  # JSONField.get_prep_value

    by_type = {
        "timestamp with time zone": timestamp,
        "date": lambda v: None if v is None else v.isoformat(),
        "numeric": lambda v: None if v is None else str(v),
        "jsonb": plain_json,
        "json": plain_json,
        "boolean": lambda v: None if v is None else int(v),
    }
    return {column: by_type.get(kind) for column, kind in pg_types.items()}


def copy_to_sqlite(source_url: str, url: str) -> dict[str, float]:
    """Copy the seeded tables' rows from PostgreSQL into the migrated SQLite database."""
    from psycopg import sql

    timings = {}
    with pg_connect(source_url) as pg, contextlib.closing(sqlite_connect(url)) as lite:
        lite.execute("PRAGMA synchronous=OFF")
        # Content types are numbered by each database's migrate: map by (app_label, model).
        pg_ct = dict(pg.execute("SELECT id, app_label || '.' || model FROM django_content_type"))
        lite_ct = {
            name: pk
            for pk, name in lite.execute(
                "SELECT id, app_label || '.' || model FROM django_content_type"
            )
        }
        content_type = {pk: lite_ct[name] for pk, name in pg_ct.items() if name in lite_ct}
        # Plain indexes are built once at the end (faster than row by row), as on PostgreSQL.
        indexes = [
            (name, definition)
            for name, table, definition in lite.execute(
                "SELECT name, tbl_name, sql FROM sqlite_master "
                "WHERE type = 'index' AND sql IS NOT NULL"
            )
            if table in SEQUENCE_TABLES
        ]
        lite.execute("BEGIN")
        for name, _ in indexes:
            lite.execute(f'DROP INDEX "{name}"')
        for table in SEQUENCE_TABLES:
            step = time.perf_counter()
            lite.execute(f'DELETE FROM "{table}"')  # noqa: S608 (e.g. a user a migration made)
            # Generated columns (hidden 2, 3) are computed by SQLite itself.
            lite_columns = [
                row[1] for row in lite.execute(f'PRAGMA table_xinfo("{table}")') if row[6] == 0
            ]
            pg_types = dict(
                pg.execute(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = 'public' AND table_name = %s",
                    [table],
                ).fetchall()
            )
            columns = [c for c in lite_columns if c in pg_types]
            convert = sqlite_converters({c: pg_types[c] for c in columns})
            steps = [
                (i, (lambda v: content_type.get(v, v)) if c == "content_type_id" else convert[c])
                for i, c in enumerate(columns)
            ]
            steps = [(i, f) for i, f in steps if f is not None]
            insert = 'INSERT INTO "{}" ({}) VALUES ({})'.format(  # noqa: S608 (our names)
                table, ", ".join(f'"{c}"' for c in columns), ", ".join("?" * len(columns))
            )
            select = sql.SQL("SELECT {} FROM {} ORDER BY id").format(
                sql.SQL(", ").join(sql.Identifier(c) for c in columns), sql.Identifier(table)
            )
            rows = 0
            with pg.transaction(), pg.cursor(name=f"copy_{table}") as cursor:
                cursor.itersize = COPY_CHUNK
                cursor.execute(select)
                while chunk := cursor.fetchmany(COPY_CHUNK):
                    if steps:
                        chunk = [list(r) for r in chunk]
                        for r in chunk:
                            for i, f in steps:
                                r[i] = f(r[i])
                    lite.executemany(insert, chunk)
                    rows += len(chunk)
            timings[f"copy {table}"] = time.perf_counter() - step
            print(f"  copy {table}: {rows:,} rows, {timings[f'copy {table}']:.1f}s", flush=True)
        step = time.perf_counter()
        for _, definition in indexes:
            lite.execute(definition)
        lite.execute("COMMIT")
        timings["indexes"] = time.perf_counter() - step
        print(f"  indexes: {timings['indexes']:.1f}s", flush=True)
    return timings


def seed_sqlite(url: str, n: int, log) -> dict[str, float]:
    """Seed the scratch PostgreSQL database at N, then copy it into a fresh SQLite file."""
    from psycopg import sql

    path = Path(sqlite_path(url))
    path.parent.mkdir(parents=True, exist_ok=True)
    source = os.environ.get(SQLITE_SOURCE_ENV) or SQLITE_SOURCE_URL
    started = time.perf_counter()
    timings = {f"pg {k}": v for k, v in seed(source, n, log).items()}
    for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        leftover.unlink(missing_ok=True)
    step = time.perf_counter()
    migrate(url, log)
    timings["migrate"] = time.perf_counter() - step
    timings.update(copy_to_sqlite(source, url))
    with contextlib.closing(sqlite_connect(url)) as conn:
        step = time.perf_counter()
        conn.execute("ANALYZE")
        timings["analyze"] = time.perf_counter() - step
        conn.execute("CREATE TABLE bench_scale_meta (key text PRIMARY KEY, value text NOT NULL)")
        conn.execute(
            "INSERT INTO bench_scale_meta VALUES ('records', ?), ('seeded_at', ?), "
            "('seed_version', ?)",
            [str(n), datetime.now().isoformat(timespec="seconds"), SEED_VERSION],
        )
    with pg_connect(source, dbname="postgres") as conn:  # the scratch copy is not kept
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {}").format(
                sql.Identifier(urlsplit(source).path.lstrip("/"))
            )
        )
    timings["total"] = time.perf_counter() - started
    return timings


def prepare_sqlite(url: str, n: int, reseed: bool, log) -> dict:
    """prepare() for a SQLite file: reuse a finished seed of this version, or seed."""
    import sqlite3

    found = None if reseed else sqlite_seeded_version(url)
    if found == SEED_VERSION:
        started = time.perf_counter()
        migrate(url, log)
        with contextlib.closing(sqlite_connect(url)) as conn:
            conn.execute(
                "DELETE FROM upstream_jobitem WHERE job_id IN "
                "(SELECT id FROM upstream_job WHERE reason = ?)",
                [LAUNCH_REASON],
            )
            conn.execute("DELETE FROM upstream_job WHERE reason = ?", [LAUNCH_REASON])
            with contextlib.suppress(sqlite3.OperationalError):  # the launches' task rows
                conn.execute("DELETE FROM django_tasks_database_dbtaskresult")
            conn.execute("ANALYZE")
        return {"reused": True, "prepare_s": round(time.perf_counter() - started, 1)}
    why = "--reseed" if reseed else ("not seeded" if found is None else f"seed version {found}")
    print(f"seeding {sqlite_path(url)} at {n:,} ({why})", flush=True)
    timings = seed_sqlite(url, n, log)
    return {"reused": False, "seed_s": {k: round(v, 1) for k, v in timings.items()}}


# --- the web process (one per database) --------------------------------------------------------


def month(field: str, year: int = 2026, number: int = 6) -> dict[str, str]:
    """DateFieldListFilter's parameters for one calendar month, as its links write them."""
    start = datetime(year, number, 1, tzinfo=ISTANBUL)
    end = (start + timedelta(days=32)).replace(day=1)
    return {f"{field}__gte": str(start), f"{field}__lt": str(end)}


def day_range(field: str, first: str, last: str) -> dict[str, str]:
    """DateRangeFilter's parameters (upstream/admin/filters.py), days as staff type them."""
    return {f"{field}__range_from": first, f"{field}__range_to": last}


def representatives() -> dict[str, dict]:
    """A realistic value for every list filter, search field and API filter, per list.

    Read from rows whose ids exist at both sizes; the seed is a formula of the id, so most
    values are the same at both (a few, e.g. which record a job item targets, differ).
    """
    from billing.models import Invoice, InvoiceItem
    from billqueries.models import BillDebt, BillQueryLine
    from subscriptions.models import Subscription, SubscriptionInvoice
    from upstream.models import Job, JobItem, UpstreamCall

    sub = Subscription.objects.get(pk=124)
    record = SubscriptionInvoice.objects.get(pk=778)
    invoice = Invoice.objects.get(pk=124)
    item = InvoiceItem.objects.get(pk=497)
    line = BillQueryLine.objects.get(pk=124)
    debt = BillDebt.objects.order_by("pk")[5]
    # A running bulk status job: 200 items at both sizes (see the "jobs" seed).
    job = Job.objects.filter(state="running", total=200).order_by("-pk").first()
    push = UpstreamCall.objects.filter(operation="invoice_status_update").order_by("pk")[3]
    job_item = JobItem.objects.filter(job=job).order_by("position").last()
    name = "Kaya"  # a surname: 1 in 40 customers
    admin_filters = {
        "subscriptioninvoice": {
            "status": {"status__exact": "0"},
            "subscription__is_fixed_price": {"subscription__is_fixed_price__exact": "0"},
            "val_date": day_range("val_date", "01.02.2027", "28.02.2027"),
            "subscription_ref": {"subscription_ref": sub.reference_no},
        },
        "subscription": {
            "is_fixed_price": {"is_fixed_price__exact": "0"},
            "interval": {"interval__exact": "3"},
            "status__exact": {"status__exact": "0"},
            "created_date": day_range("created_date", "01.06.2025", "30.06.2025"),
        },
        "invoice": {
            "status": {"status__exact": "unpaid"},
            "created_at_upstream": day_range("created_at_upstream", "01.06.2026", "30.06.2026"),
            "due_date": day_range("due_date", "01.06.2026", "30.06.2026"),
            "currency": {"currency__exact": "USD"},
            "customer": {"customer": name},
        },
        "invoiceitem": {
            "tax_exempt": {"tax_exempt__exact": "1"},
            "due_date": day_range("due_date", "01.06.2027", "30.06.2027"),
            "invoice__status": {"invoice__status__exact": "unpaid"},
            "invoice__currency": {"invoice__currency__exact": "EUR"},
            "invoice_number": {"invoice_number": invoice.number},
            "customer": {"customer": name},
        },
        "institution": {
            "invoice_type": {"invoice_type__exact": "Su Faturası"},
            "additional_no_required": {"additional_no_required__exact": "1"},
            "partial_amount": {"partial_amount__exact": "1"},
            "active": {"active__exact": "0"},
        },
        "billqueryline": {
            "outcome": {"outcome__exact": "found"},
            "state": {"state__exact": "done"},
            "institution": {"institution__id__exact": "3"},
        },
        "billquerybatch": {
            "state": {"state__exact": "failed"},
            "source": {"source__exact": "xlsx"},
            "created_at": month("created_at"),
        },
        "upstreamcall": {
            "service": {"service__exact": "wisecp"},
            "operation": {"operation__exact": "invoice_status_update"},
            "outcome": {"outcome__exact": "rejected"},
            "created_at": month("created_at"),
        },
        "job": {
            "approval": {"approval": "mine"},
            "state": {"state__exact": "partially_failed"},
            "kind": {"kind__exact": "wisecp.invoice_item_update"},
            "inline": {"inline__exact": "0"},
            "created_at": month("created_at"),
        },
        "drift": {
            "service": {"service__exact": "wisecp"},
            "kind": {"kind__exact": "missing"},
            "state": {"state__exact": "open"},
        },
        "jobitem": {
            "state": {"state__exact": "pending"},
            "outcome": {"outcome__exact": "rejected"},
            "in_doubt": {"in_doubt__exact": "1"},
            "job__kind": {"job__kind__exact": "payofin.bill_query"},
        },
    }
    date_hierarchy = {"created_at": {"created_at__year": "2026", "created_at__month": "6"}}
    searches = {
        "subscriptioninvoice": {
            "=invoice_no": record.invoice_no,
            "=invoice_id": record.invoice_id,
            "subscription__reference_no": sub.reference_no,
            "subscription__name_surname": name,
        },
        "subscription": {
            "reference_no": sub.reference_no,
            "=subscription_id": sub.subscription_id,
            "name_surname": name,
            "end_user_email": sub.end_user_email,
            "end_user_gsm": sub.end_user_gsm,
        },
        "invoice": {
            "number": invoice.number,
            "=wisecp_id": str(invoice.wisecp_id),
            "full_name": name,
            "company_name": "Bilişim",
            "items__description": "hosting",
        },
        "invoiceitem": {
            "description": "hosting",
            "=wisecp_id": str(item.wisecp_id),
            "invoice__number": invoice.number,
            "invoice__full_name": name,
            "invoice__company_name": "Bilişim",
        },
        "institution": {"name": "Enerjisa", "=soot_code": "10", "description": "Elektrik"},
        "billqueryline": {
            "=subscriber_no": line.subscriber_no,
            "=firm_ref_no": line.firm_ref_no,
            "=batch__id": str(line.batch_id),
            "debts__invoice_no": debt.invoice_no,
        },
        "billquerybatch": {"=id": "12", "filename": "borclar", "created_by__username": "operator2"},
        "upstreamcall": {
            "target_repr": push.target_repr,
            "target_id": push.target_id,
            "upstream_message": "Geçersiz",
            "url": f"GetInvoice/{invoice.wisecp_id}",
            "=job__id": str(job.pk),
        },
        "job": {"title": "ödeme kaydını", "reason": "iptal", "=id": str(job.pk)},
        "jobitem": {
            "target_repr": job_item.target_repr,
            "target_id": job_item.target_id,
            "message": "zaman aşımı",
            "=job__id": str(job.pk),
        },
    }
    api_filters = {
        "subscriptions": {
            "reference_no": sub.reference_no,
            "subscription_id": sub.subscription_id,
            "is_fixed_price": "false",
        },
        "subscription-invoices": {
            "invoice_id": record.invoice_id,
            "invoice_no": record.invoice_no,
            "subscription": str(sub.pk),
            "status": "0",
            "val_date_after": "2027-02-01T00:00:00+03:00",
            "val_date_before": "2027-02-28T23:59:59+03:00",
        },
        "invoices": {
            "wisecp_id": str(invoice.wisecp_id),
            "status": "unpaid",
            "currency": "USD",
            "user_id": str(invoice.user_id),
        },
        "invoice-items": {
            "wisecp_id": str(item.wisecp_id),
            "invoice": str(invoice.pk),
            "order_id": str(item.order_id),
            "tax_exempt": "true",
        },
        "institutions": {
            "soot_code": "10",
            "invoice_type": "Su Faturası",
            "additional_no_required": "true",
            "active": "true",
        },
        "bill-query-batches": {"state": "finished", "source": "csv"},
        "drift": {"service": "paynet", "kind": "outside_change", "state": "open"},
        "jobs": {"state": "succeeded", "kind": "paynet.invoice_status"},
        "upstream-calls": {
            "service": "wisecp",
            "operation": "invoice_status_update",
            "outcome": "rejected",
            "job": str(job.pk),
            "target_type": push.target_type,
            # A record's calls are asked by type and id (the id alone also matches other
            # kinds of record, more of them in a longer log).
            "target_id": {"target_type": push.target_type, "target_id": push.target_id},
            "created_after": "2026-06-01T00:00:00+03:00",
            "created_before": "2026-06-30T23:59:59+03:00",
        },
    }
    # Issue 20: a common and a rare word on every list that matches words inside a text. A
    # common word matches a quarter (items' "hosting") or a fortieth (a surname) of the rows; a
    # rare one a handful (a whole name, a domain).
    domain = item.description.rpartition("(")[2].rstrip(")")
    word_searches = {
        "subscriptioninvoice": {"common": "Yılmaz", "rare": sub.name_surname},
        "subscription": {"common": "Yılmaz", "rare": sub.name_surname},
        "invoice": {"common": "Yılmaz", "rare": invoice.full_name or domain},
        "invoiceitem": {"common": "hosting", "rare": domain},
        "institution": {"common": "Elektrik", "rare": "Enerjisa"},
        "billquerybatch": {"common": "borclar", "rare": "borclar-12"},
        "upstreamcall": {"common": "Başarılı", "rare": "Sistem hatası"},
        "job": {"common": "ödeme kaydını", "rare": "toplu sorgu #12,"},
        "jobitem": {"common": "Başarılı", "rare": "zaman aşımı"},
    }
    return {
        "admin_filters": admin_filters,
        "date_hierarchy": date_hierarchy,
        "searches": searches,
        "word_searches": word_searches,
        "api_filters": api_filters,
    }


def record_page_views(reps: dict) -> list[tuple[str, str]]:
    """Issue 9: a payment record's admin page (its timeline included) and its API timeline, on
    the record that holds 1,000 of the 5M history rows (seed "record history")."""
    return [
        (
            "record:subscriptioninvoice/page",
            f"/subscriptions/subscriptioninvoice/{HISTORY_RECORD}/change/",
        ),
        (
            "api:subscription-invoices/timeline",
            f"/api/subscription-invoices/{HISTORY_RECORD}/timeline/",
        ),
    ]


def job_page_views() -> list[tuple[str, str]]:
    """Issue 20: a job's page for the running job of 200 items, the jobs of 500 and 50,000 items
    and the approver's page of the bulk job of 50,000 records (seed "big jobs": the same at
    both sizes)."""
    from upstream.models import Job

    jobs = Job.objects.exclude(reason=LAUNCH_REASON)
    running = jobs.filter(state="running", total=200).order_by("-pk").values_list("pk", flat=True)
    big = dict(
        jobs.filter(reason="Kampanya sonu toplu iptal", created_by_id=3, state="succeeded")
        .filter(total__in=(500, 50_000))
        .order_by("pk")
        .values_list("total", "pk")
    )
    waiting = jobs.filter(state="awaiting_approval", total=50_000).values_list("pk", flat=True)
    return [
        ("record:job/page:200", f"/upstream/job/{running.first()}/change/"),
        ("record:job/page:500", f"/upstream/job/{big.get(500)}/change/"),
        ("record:job/page:50000", f"/upstream/job/{big.get(50_000)}/change/"),
        ("record:job/approval:50000", f"/upstream/job/{waiting.first()}/change/"),
    ]


def admin_views(user, reps: dict, missing: list[str]) -> list[tuple[str, str]]:
    """Every changelist with each filter, search field, sortable column, its last page, a common
    and a rare word (and page 200, if big)."""
    from django.contrib import admin
    from django.test import RequestFactory
    from django.urls import reverse

    from upstream.admin.lists import How

    # The admin index is the operations dashboard (issue 10): charts, counts, health cards.
    views = [("admin:index", reverse("admin:index"))]
    registry = sorted(admin.site._registry.items(), key=lambda kv: kv[0]._meta.label_lower)
    for model, modeladmin in registry:
        if model._meta.app_label not in PROJECT_APPS:
            continue
        name = model._meta.model_name
        url = reverse(f"admin:{model._meta.app_label}_{name}_changelist")
        prefix = f"admin:{name}"
        views.append((prefix, url))
        if name in BIG_LISTS:
            # Page 200 at 50 a page; the last page at 10k either way, so both sizes have it.
            page = min(200, 10_000 // modeladmin.list_per_page)
            views.append((f"{prefix}/page:{page}", f"{url}?p={page}"))
        for entry in modeladmin.list_filter:
            if isinstance(entry, list | tuple):
                key = entry[0]
            else:
                key = entry if isinstance(entry, str) else entry.parameter_name
            query = reps["admin_filters"].get(name, {}).get(key)
            if query is None:
                missing.append(f"{prefix} filter {key}")
                continue
            views.append((f"{prefix}/filter:{key}", f"{url}?{urlencode(query)}"))
        if modeladmin.date_hierarchy:
            query = reps["date_hierarchy"].get(modeladmin.date_hierarchy)
            if query is None:
                missing.append(f"{prefix} date hierarchy {modeladmin.date_hierarchy}")
            else:
                views.append((f"{prefix}/date_hierarchy", f"{url}?{urlencode(query)}"))
        for field in modeladmin.search_fields:
            term = reps["searches"].get(name, {}).get(field)
            if term is None:
                missing.append(f"{prefix} search {field}")
                continue
            views.append(
                (f"{prefix}/search:{field.lstrip('=^@')}", f"{url}?{urlencode({'q': term})}")
            )
        if any(m.how == How.CONTAINS for m in getattr(modeladmin, "search_matches", ())):
            words = reps["word_searches"].get(name)
            if words is None:
                missing.append(f"{prefix} common and rare words")
            else:
                for how, term in words.items():
                    views.append((f"{prefix}/search-{how}", f"{url}?{urlencode({'q': term})}"))
        request = RequestFactory().get(url)
        request.user = user
        changelist = modeladmin.get_changelist_instance(request)
        # The last page its links offer (of the estimate, on a big list): issue 20.
        # Listed at every size (jobs grow with N: one page at 10k), so both sizes list the same.
        last = max(changelist.paginator.num_pages, 1)
        views.append((f"{prefix}/page:last", f"{url}?p={last}"))
        for index, column in enumerate(changelist.list_display):
            if changelist.get_ordering_field(column) is not None:
                views.append((f"{prefix}/sort:{column}", f"{url}?o={index}"))
    return views


def api_views(reps: dict, missing: list[str]) -> list[tuple[str, str]]:
    """Every API list with each of its filters (and page 200, if big)."""
    from config.api_urls import router

    views = []
    for prefix, viewset, _ in router.registry:
        if not hasattr(viewset, "list"):
            continue
        url = f"/api/{prefix}/"
        views.append((f"api:{prefix}", url))
        if prefix in BIG_API_LISTS:
            views.append((f"api:{prefix}/page:200", f"{url}?page=200"))
        # Issue 20: the largest page, its last page, and a cursor's first page at that size.
        views.append((f"api:{prefix}/page_size:max", f"{url}?page_size={MAX_API_PAGE}"))
        views.append(
            (f"api:{prefix}/page_size:max/last", f"{url}?page_size={MAX_API_PAGE}&page=last")
        )
        views.append((f"api:{prefix}/cursor", f"{url}?cursor=&page_size={MAX_API_PAGE}"))
        filterset = getattr(viewset, "filterset_class", None)
        if filterset:
            params = list(filterset.base_filters)
        else:
            params = list(getattr(viewset, "filterset_fields", None) or [])
        for param in params:
            value = reps["api_filters"].get(prefix, {}).get(param)
            if value is None:
                missing.append(f"api:{prefix} filter {param}")
                continue
            query = value if isinstance(value, dict) else {param: value}
            views.append((f"api:{prefix}/filter:{param}", f"{url}?{urlencode(query)}"))
    return views


class RssPeak:
    """The process's resident set size, sampled every 2 ms while the block runs."""

    PAGE = os.sysconf("SC_PAGE_SIZE")

    @classmethod
    def rss(cls) -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * cls.PAGE

    def __enter__(self) -> RssPeak:
        self.before = self.peak = self.rss()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while not self.done.wait(0.002):
            self.peak = max(self.peak, self.rss())

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()
        self.peak = max(self.peak, self.rss())

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.before) / 2**20


class Web:
    """What one web process does for the bench: GET a path, or launch a status change."""

    def __init__(self) -> None:
        from django.contrib.auth import get_user_model
        from django.db import connection
        from django.test import Client

        self.user, _ = get_user_model().objects.update_or_create(
            username="bench", defaults={"is_staff": True, "is_superuser": True, "is_active": True}
        )
        self.client = Client()
        self.client.force_login(self.user)
        self.queries = 0
        connection.execute_wrappers.append(self._count)

    def _count(self, execute, sql, params, many, context):
        self.queries += 1
        return execute(sql, params, many, context)

    def views(self) -> dict:
        reps = representatives()
        missing: list[str] = []
        views = admin_views(self.user, reps, missing) + api_views(reps, missing)
        views += record_page_views(reps) + job_page_views()
        return {"views": views, "missing": missing}

    def get(self, path: str, n: int = 1) -> dict:
        ms = []
        for _ in range(n):
            self.queries = 0
            started = time.perf_counter()
            response = self.client.get(path)
            ms.append((time.perf_counter() - started) * 1000)
        return {
            "ms": ms,
            "status": response.status_code,
            "sql": self.queries,
            "bytes": len(response.content),
        }

    def _post(self, path: str, data: dict, *, memory: str = "") -> tuple:
        self.queries = 0
        figures: dict = {}
        if memory == "tracemalloc":
            import tracemalloc

            tracemalloc.start()
            response = self.client.post(path, data)
            figures["tracemalloc_peak_mb"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
            tracemalloc.stop()
            return response, figures
        with RssPeak() as rss:
            started = time.perf_counter()
            response = self.client.post(path, data)
            figures["ms"] = round((time.perf_counter() - started) * 1000, 1)
        figures["sql"] = self.queries
        if memory == "rss":
            figures["rss_growth_mb"] = round(rss.growth_mb, 1)
        return response, figures

    def _started_job(self, response, records: int) -> int:
        """The job the confirming POST created (it redirects to the job's page)."""
        import re

        from upstream.models import Job

        location = response.get("Location", "") if response.status_code == 302 else ""
        found = re.search(r"/upstream/job/(\d+)/", location)
        if not found:
            text = response.content.decode(errors="replace")
            errors = re.findall(r'class="(?:errorlist|error)[^"]*">(.*?)</', text, re.S)
            raise RuntimeError(
                f"the launch did not start a job (HTTP {response.status_code}): {errors[:3]}"
            )
        job = Job.objects.get(pk=int(found.group(1)))
        if job.total != records:
            raise RuntimeError(f"job #{job.pk} has {job.total} items, expected {records}")
        return job.pk

    def _delete_job(self, job_id: int) -> None:
        from django.db import connection
        from django_tasks_db.models import DBTaskResult

        from upstream.models import Job

        task_id = Job.objects.filter(pk=job_id).values_list("task_id", flat=True).first()
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM upstream_jobitem WHERE job_id = %s", [job_id])
            cursor.execute("DELETE FROM upstream_job WHERE id = %s", [job_id])
        if task_id:
            DBTaskResult.objects.filter(pk=task_id).delete()

    def launch(self, records: int, first_day: str, last_day: str, trace: bool = False) -> dict:
        """Select all `records` waiting records through the changelist's filters, then
        Change status… -> preview -> confirm, as staff do; time the preview and the launch."""
        from django.urls import reverse

        from subscriptions.models import SubscriptionInvoice

        query = {
            "status__exact": "0",
            "subscription__is_fixed_price__exact": "0",
            **day_range("val_date", first_day, last_day),
        }
        url = reverse("admin:subscriptions_subscriptioninvoice_changelist")
        url = f"{url}?{urlencode(query)}"
        start = datetime.strptime(first_day, "%d.%m.%Y").replace(tzinfo=ISTANBUL)
        end = datetime.strptime(last_day, "%d.%m.%Y").replace(tzinfo=ISTANBUL) + timedelta(days=1)
        matching = SubscriptionInvoice.objects.filter(
            status=0, subscription__is_fixed_price=False, val_date__gte=start, val_date__lt=end
        )
        count = matching.count()
        if count != records:
            raise RuntimeError(f"the launch filter matches {count} records, not {records}")
        selection = {
            "action": "change_status",
            "index": "0",
            "select_across": "1",
            "_selected_action": str(matching.order_by("pk").values_list("pk", flat=True)[0]),
        }
        shown = self.client.post(url, selection)  # "Go" on the changelist: the confirmation page
        if shown.status_code != 200:
            raise RuntimeError(f"the confirmation page answered HTTP {shown.status_code}")
        target = {"status": str(LAUNCH_TARGET_STATUS)}
        preview, preview_figures = self._post(url, {**selection, **target, "step": "preview"})
        if preview.status_code != 200:
            raise RuntimeError(f"the preview answered HTTP {preview.status_code}")
        confirm = {**selection, **target, "reason": LAUNCH_REASON, "step": "confirm"}
        response, figures = self._post(url, confirm, memory="rss")
        figures["job_items"] = records
        self._delete_job(self._started_job(response, records))
        if trace:  # the same launch again under tracemalloc, which slows it: not timed
            response, traced = self._post(url, confirm, memory="tracemalloc")
            self._delete_job(self._started_job(response, records))
            figures.update(traced)
        return {
            "records": records,
            "preview_ms": preview_figures["ms"],
            "preview_sql": preview_figures["sql"],
            **figures,
        }


def serve() -> None:
    """The web process: one JSON command per line on stdin, one JSON answer per line back."""
    import config.wsgi  # noqa: F401  set up as the product's server is (its gc.freeze() too)

    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever else prints goes to the log, not into the answers
    web = Web()
    for line in sys.stdin:
        command = json.loads(line)
        try:
            answer = getattr(web, command.pop("op"))(**command)
        except Exception:
            answer = {"error": traceback.format_exc()}
        answers.write(json.dumps(answer) + "\n")


class WebProcess:
    def __init__(self, label: str, url: str, workdir: Path) -> None:
        self.label = label
        self.log_path = workdir / f"web-{label}.log"
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DJANGO_DEBUG": "false",
            "DJANGO_LOG_LEVEL": "ERROR",
            "TASKS_BACKEND": "database",
            # It times the lists, hundreds of requests a minute by one user: not the throttle.
            "API_THROTTLE_USER": "",
        }
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--serve"],
                cwd=ROOT,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                bufsize=1,
            )

    def ask(self, op: str, **args) -> dict:
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.label} web process died; see {self.log_path}")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"{self.label} web process, {op} {args}:\n{answer['error']}")
        return answer

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


# --- measuring and reporting --------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest rank: with 20 samples p95 is the 19th fastest."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def measure(webs: dict[str, WebProcess], views, args, deadline: float) -> list[dict]:
    """Timed GETs of every view at both sizes, alternating request by request.

    Two passes so that the run fits in --budget however slow the code is: first every view gets
    --warmup untimed requests and FIRST_ROUNDS timed rounds (1 if its warm-up at 1M took over
    SLOW_MS), then views are topped up to --reps rounds, cheapest first, while the time lasts.
    The views left short are the most expensive ones, far over the goal; the table marks them.
    """
    labels = list(webs)
    states = []

    def rounds(state: dict, count: int) -> None:
        for _ in range(count):
            # Alternate who goes first, so neither size always finds the other's work cached.
            order = labels if state["n"] % 2 == 0 else labels[::-1]
            for label in order:
                answer = webs[label].ask("get", path=state["paths"][label])
                state["samples"][label] += answer["ms"]
            state["n"] += 1

    for number, (name, paths) in enumerate(views, start=1):
        state = {"view": name, "paths": paths, "n": 0, "samples": {label: [] for label in labels}}
        state["first"] = {
            label: webs[label].ask("get", path=paths[label], n=args.warmup) for label in labels
        }
        slow = max(state["first"]["1m"]["ms"]) > SLOW_MS
        rounds(state, min(args.reps, 1 if slow else FIRST_ROUNDS))
        states.append(state)
        print(f"[{number}/{len(views)}] {summary(state)}", flush=True)

    def cost(state: dict) -> float:
        """Seconds per round, from the rounds so far."""
        return sum(sum(v) / len(v) for v in state["samples"].values()) / 1000

    for state in sorted(states, key=cost):
        left = args.reps - state["n"]
        if left > 0 and time.monotonic() + left * cost(state) * 1.1 < deadline:
            rounds(state, left)
            print(f"[+] {summary(state)}", flush=True)
    return [row(state) for state in states]


def summary(state: dict) -> str:
    r = row(state)
    return (
        f"{r['view']}: p95 {r['p95_10k']:.0f} / {r['p95_1m']:.0f} ms (x{r['ratio']:.1f}, "
        f"n={r['n']})"
    )


def row(state: dict) -> dict:
    r = {"view": state["view"], "paths": state["paths"], "n": state["n"]}
    for label, samples in state["samples"].items():
        r[f"p50_{label}"] = round(percentile(samples, 0.50), 1)
        r[f"p95_{label}"] = round(percentile(samples, 0.95), 1)
        r[f"sql_{label}"] = state["first"][label]["sql"]
        r[f"status_{label}"] = state["first"][label]["status"]
        # The page's size: a page that holds more rows at the big size (a small table's only
        # page at 10k, a full page at 1M) costs more to render whatever the database does.
        r[f"bytes_{label}"] = state["first"][label]["bytes"]
    r["ratio"] = round(r["p95_1m"] / max(r["p95_10k"], RATIO_FLOOR_MS), 2)
    r["ratio_p50"] = round(r["p50_1m"] / max(r["p50_10k"], RATIO_FLOOR_MS), 2)
    return r


def print_table(rows: list[dict], reps: int, big: str = "1M") -> None:
    width = max(len(r["view"]) for r in rows)
    head = (
        f"{'view':<{width}} {'n':>3} {'p50 10k':>8} {'p95 10k':>8} {'p50 ' + big:>8} "
        f"{'p95 ' + big:>8} {'ratio':>6} {'r50':>6} {'sql 10k':>7} {'sql ' + big:>7}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        note = "" if r["n"] >= reps else " *"
        if r["status_10k"] != 200 or r["status_1m"] != 200:
            note += f" HTTP {r['status_10k']}/{r['status_1m']}"
        print(
            f"{r['view']:<{width}} {r['n']:>3} {r['p50_10k']:>8.1f} {r['p95_10k']:>8.1f} "
            f"{r['p50_1m']:>8.1f} {r['p95_1m']:>8.1f} {r['ratio']:>6.2f} {r['ratio_p50']:>6.2f} "
            f"{r['sql_10k']:>7} {r['sql_1m']:>7}{note}"
        )


def vacuum(url: str, tables: tuple[str, ...]) -> None:
    """VACUUM ANALYZE the tables (ANALYZE on SQLite, which has no per-table VACUUM)."""
    from psycopg import sql

    if url.startswith("sqlite"):
        with contextlib.closing(sqlite_connect(url)) as conn:
            for table in tables:
                conn.execute(f'ANALYZE "{table}"')
        return
    with pg_connect(url) as conn:
        for table in tables:
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(table)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reseed", action="store_true", help="seed both databases again")
    parser.add_argument(
        "--sqlite",
        action="store_true",
        default=os.environ.get("BENCH_SCALE_DB") == "sqlite",
        help="two SQLite files at 10k and 100k rows instead (or BENCH_SCALE_DB=sqlite)",
    )
    parser.add_argument("--reps", type=int, default=20, help="timed requests per view and size")
    parser.add_argument("--warmup", type=int, default=1, help="untimed requests per view first")
    parser.add_argument(
        "--budget",
        type=float,
        default=24 * 60,
        help="seconds for the whole run; views far over the goal get fewer requests to fit",
    )
    parser.add_argument("--quick", action="store_true", help="5 requests per view")
    parser.add_argument("--only", default="", help="measure only views whose name contains this")
    parser.add_argument("--no-launch", action="store_true", help="skip the launch figures")
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="also run each launch again under tracemalloc (untimed) for its peak",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    if args.quick:
        args.reps = 5
    started = time.monotonic()
    deadline = started + args.budget - 15  # the table and the report
    backend = "sqlite" if args.sqlite else "postgres"
    sizes = scales(backend)
    if backend == "sqlite":
        folder = Path(os.environ.get(SQLITE_DIR_ENV) or SQLITE_DIR).resolve()
        urls = {
            label: f"sqlite:///{folder / f'admin_scale-{n}.sqlite3'}" for label, n in sizes.items()
        }
        prepare_one = prepare_sqlite
    else:
        urls = {label: os.environ.get(ENV_URLS[label]) or DEFAULT_URLS[label] for label in sizes}
        for label, url in urls.items():
            if not url.startswith("postgres"):
                sys.exit(f"admin_scale.py needs PostgreSQL: set {ENV_URLS[label]}=postgres://...")
        prepare_one = prepare
    workdir = Path(tempfile.mkdtemp(prefix="bench-admin-scale-"))
    print(f"logs in {workdir}", flush=True)
    databases = {}
    with (workdir / "migrate.log").open("ab") as log:
        for label, url in urls.items():
            databases[label] = prepare_one(url, sizes[label], args.reseed, log)
    setup_s = time.monotonic() - started
    print(f"databases ready in {setup_s:.0f}s: {json.dumps(databases)}", flush=True)

    webs = {label: WebProcess(label, url, workdir) for label, url in urls.items()}
    launches: dict[int, dict] = {}
    try:
        # Each size asks its own paths (a searched value exists at both sizes; a few differ).
        listed = {label: web.ask("views") for label, web in webs.items()}
        names = [name for name, _ in listed["10k"]["views"]]
        if names != [name for name, _ in listed["1m"]["views"]]:
            other = [name for name, _ in listed["1m"]["views"]]
            raise RuntimeError(
                "the two web processes list different views: "
                f"{sorted(set(names) ^ set(other))} (or their order)"
            )
        views = [
            (name, {label: dict(listed[label]["views"])[name] for label in webs})
            for name in names
            if args.only in name
        ]
        missing = listed["10k"]["missing"]
        for what in missing:
            print(f"warning: no representative value for {what}: not measured", flush=True)
        launch_started = time.monotonic()
        if not args.no_launch:
            plan = launch_plan(sizes["1m"])
            first_day, last_day = plan[LAUNCH_SMALL]
            webs["1m"].ask("launch", records=LAUNCH_SMALL, first_day=first_day, last_day=last_day)
            for records, (first_day, last_day) in plan.items():  # the first was a warm-up
                launches[records] = webs["1m"].ask(
                    "launch",
                    records=records,
                    first_day=first_day,
                    last_day=last_day,
                    trace=args.tracemalloc,
                )
                print(f"launch {records:,}: {json.dumps(launches[records])}", flush=True)
            # The launches wrote and deleted job items: leave the tables as the seed did.
            vacuum(urls["1m"], ("upstream_jobitem", "upstream_job"))
        launch_s = time.monotonic() - launch_started
        measure_started = time.monotonic()
        rows = measure(webs, views, args, deadline)
        measure_s = time.monotonic() - measure_started
    finally:
        for web in webs.values():
            web.stop()
    timings = {
        "setup_s": round(setup_s, 1),
        "launch_s": round(launch_s, 1),
        "measure_s": round(measure_s, 1),
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    report(rows, launches, databases, missing, args, timings, backend, sizes)


def report(rows, launches, databases, missing, args, timings, backend, sizes) -> None:
    big = size_label(sizes["1m"])
    print()
    print(f"{backend}: 10k = {sizes['10k']:,} records, {big} = {sizes['1m']:,}")
    if not rows:
        print("no view measured (--only matched none)")
        return
    print_table(rows, args.reps, big)
    print()
    print(
        f"p50/p95 in ms over n timed requests per size (nearest rank; after {args.warmup} "
        f"warm-up); ratio = p95 {big} / max(p95 10k, {RATIO_FLOOR_MS:.0f} ms); sql = statements "
        f"per request; r50 = the same ratio of p50s. * = fewer than {args.reps} requests: too "
        f"slow to get them all within --budget ({args.budget:.0f} s); the slowest come last."
    )
    worst_p95 = max(rows, key=lambda r: r["p95_1m"])
    worst_ratio = max(rows, key=lambda r: r["ratio"])
    print(f"slowest at {big} (p95):")
    for r in sorted(rows, key=lambda r: -r["p95_1m"])[:10]:
        print(f"  {r['p95_1m']:>9.1f} ms  {r['view']}")
    print(f"worst ratio (p95 {big} / p95 10k):")
    for r in sorted(rows, key=lambda r: -r["ratio"])[:10]:
        print(f"  {r['ratio']:>9.2f}     {r['view']}")
    if launches:
        print(
            "launch (select all -> Change status… -> confirm, waiting -> cancelled), "
            f"{big} database; memory = peak RSS growth of the web process during the "
            "confirming request:"
        )
        for records, f in launches.items():
            traced = (
                f", tracemalloc peak {f['tracemalloc_peak_mb']} MB"
                if "tracemalloc_peak_mb" in f
                else ""
            )
            print(
                f"  {records:>6,} records: confirm {f['ms']:.0f} ms, {f['sql']} SQL, "
                f"RSS +{f['rss_growth_mb']} MB{traced}; preview {f['preview_ms']:.0f} ms, "
                f"{f['preview_sql']} SQL"
            )
    result = {
        "backend": backend,
        "sizes": sizes,
        "databases": databases,
        "reps": args.reps,
        "warmup": args.warmup,
        "budget_s": args.budget,
        "ratio_floor_ms": RATIO_FLOOR_MS,
        **timings,
        "views": rows,
        "unmeasured": missing,
        "launches": {str(k): v for k, v in launches.items()},
    }
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    suffix = "-sqlite" if backend == "sqlite" else ""
    (out / f"admin_scale{suffix}-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(
        json.dumps(result, indent=2)
    )
    # The big launch: 50,000 records at 1M (fewer on a smaller database, see launch_plan()).
    big_launch = max(launch_plan(sizes["1m"]))
    launch_key = f"launch_{size_label(big_launch)}_ms"
    sql_key = f"launch_sql_{size_label(big_launch)}"
    figures = {
        "worst_p95_ms": worst_p95["p95_1m"],
        "worst_ratio": worst_ratio["ratio"],
        "launch_50k_ms": launches.get(big_launch, {}).get("ms"),
    }
    missed = [
        launch_key if k == "launch_50k_ms" else k
        for k, goal in GOALS.items()
        if figures[k] is None or figures[k] > goal
    ]
    sql_500 = launches.get(LAUNCH_SMALL, {}).get("sql")
    sql_big = launches.get(big_launch, {}).get("sql")
    if sql_500 is None or sql_500 != sql_big:
        missed.append(f"launch_sql_500 == {sql_key}")
    print(
        f"goals: worst_p95_ms <= {GOALS['worst_p95_ms']}, worst_ratio <= {GOALS['worst_ratio']}, "
        f"{launch_key} <= {GOALS['launch_50k_ms']}, equal launch SQL counts: "
        + ("all met" if not missed else "missed " + ", ".join(missed))
    )
    print(f"worst p95 view: {worst_p95['view']}; worst ratio view: {worst_ratio['view']}")
    print(
        f"elapsed: {timings['elapsed_s']:.0f}s (databases {timings['setup_s']:.0f}s, launches "
        f"{timings['launch_s']:.0f}s, views {timings['measure_s']:.0f}s)"
    )
    print(
        f"worst_p95_ms={worst_p95['p95_1m']:.1f} "
        f"worst_ratio={worst_ratio['ratio']:.2f}@{worst_ratio['view']} "
        f"{launch_key}={figures['launch_50k_ms']} launch_sql_500={sql_500} "
        f"{sql_key}={sql_big}"
    )
    if args.check and missed:
        sys.exit(1)


if __name__ == "__main__":
    main()
