"""Headers on every answer: a Content-Security-Policy the admin, its charts and the API docs
work under (django-csp), Referrer-Policy and Permissions-Policy; no page relies on an inline
handler or an inline script without the request's nonce."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.contrib.admin import site
from django.urls import reverse

from billqueries.models import BillQueryBatch

INLINE_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.IGNORECASE)
SCRIPT_TAG = re.compile(r"<script\b([^>]*)>", re.IGNORECASE)


def _policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    directives = [part.strip().split() for part in header.split(";") if part.strip()]
    return {name: values for name, *values in directives}


def _assert_headers(response) -> dict[str, list[str]]:
    policy = _policy(response)
    assert policy["default-src"] == ["'self'"]
    assert "'unsafe-inline'" not in policy["script-src"]
    assert "'unsafe-eval'" not in policy["script-src"]
    assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]
    assert response["Referrer-Policy"] == "same-origin"
    assert "camera=()" in response["Permissions-Policy"]
    assert "geolocation=()" in response["Permissions-Policy"]
    return policy


def _assert_scripts_allowed(html: str, policy: dict[str, list[str]], where: str) -> None:
    assert not INLINE_HANDLER.search(html), f"{where}: an inline handler the CSP blocks"
    nonces = {v[len("'nonce-") : -1] for v in policy["script-src"] if v.startswith("'nonce-")}
    for attributes in SCRIPT_TAG.findall(html):
        if "src=" in attributes:
            continue
        found = re.search(r'nonce="([^"]+)"', attributes)
        assert found and found.group(1) in nonces, f"{where}: an inline script without nonce"


def test_the_login_page_carries_the_headers(client) -> None:
    response = client.get(reverse("admin:login"))
    assert response.status_code == 200
    _assert_headers(response)


def test_every_admin_list_and_the_dashboard_work_under_the_policy(db, admin_client) -> None:
    urls = [reverse("admin:index")]
    for model in site._registry:
        info = (model._meta.app_label, model._meta.model_name)
        urls.append(reverse("admin:{}_{}_changelist".format(*info)))
    urls.append(reverse("admin:billqueries_billquerybatch_add"))
    for url in urls:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        policy = _assert_headers(response)
        _assert_scripts_allowed(response.content.decode(), policy, url)


def test_a_batch_page_runs_its_script_with_the_requests_nonce(db, admin_client, admin_user):
    batch = BillQueryBatch.objects.create(source=BillQueryBatch.Source.TYPED, created_by=admin_user)
    response = admin_client.get(reverse("admin:billqueries_billquerybatch_change", args=[batch.pk]))
    assert response.status_code == 200
    policy = _assert_headers(response)
    html = response.content.decode()
    assert re.search(r"<script nonce=", html), "the progress script is there"
    _assert_scripts_allowed(html, policy, "batch page")


def test_the_api_answers_carry_the_headers(db, admin_client) -> None:
    _assert_headers(admin_client.get("/api/jobs/"))


def test_the_api_docs_load_only_our_own_scripts(db, admin_client) -> None:
    response = admin_client.get("/api/docs/")
    assert response.status_code == 200
    policy = _assert_headers(response)
    html = response.content.decode()
    _assert_scripts_allowed(html, policy, "/api/docs/")
    sources = re.findall(r'<script src="([^"]+)"', html)
    assert sources and all(src.startswith("/") for src in sources), sources  # no CDN
    start = next(src for src in sources if "script" in src and "docs" in src)
    script = admin_client.get(start.replace("&amp;", "&"))
    assert script.status_code == 200 and b"SwaggerUIBundle" in script.content


@pytest.mark.parametrize("path", ["/static/backoffice/submit_once.js"])
def test_the_pages_behaviours_live_in_a_static_file(path) -> None:
    from django.contrib.staticfiles import finders

    text = Path(finders.find(path.removeprefix("/static/"))).read_text()
    assert "data-back" in text and "data-submit-on-change" in text
