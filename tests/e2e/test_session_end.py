"""A page that polls its progress notices when the session ends, instead of freezing."""

from __future__ import annotations

import pytest
from django.contrib.sessions.models import Session

from upstream.models import Job

from .conftest import PASSWORD, log_in

pytestmark = pytest.mark.e2e


def test_a_job_page_polling_its_progress_goes_to_the_login_when_the_session_ends(
    new_page, transactional_db, operator
):
    # Queued and never run (no worker here): its page polls for as long as it is open.
    job = Job.objects.create(
        kind="paynet.invoice_status",
        title="Bekleyen iş",
        created_by=operator,
        state=Job.State.QUEUED,
        total=1,
    )
    page = new_page()
    log_in(page, operator.username)
    page.goto(f"/upstream/job/{job.pk}/change/")
    page.wait_for_selector("#job")

    Session.objects.all().delete()  # as the idle timeout or a logout elsewhere would

    # The next poll is redirected to the login page: the page reloads and shows the login.
    page.wait_for_url("**/login/**", timeout=10_000)
    assert page.locator("#id_username").is_visible()


def test_an_idle_session_warns_before_it_ends_says_why_after_and_keeps_what_was_typed(
    new_page, transactional_db, operator, settings
):
    settings.SESSION_IDLE_SECONDS = 8  # the warning comes 2 s before the end
    page = new_page("en-US")
    log_in(page, operator.username)
    page.goto("/billqueries/billquerybatch/add/")
    page.fill("textarea[name=text]", "1;01345677000")

    page.wait_for_selector("#session-warning", state="visible", timeout=10_000)
    assert "oturumunuz" in page.inner_text("#session-warning")  # Turkish by default
    page.wait_for_selector("#session-ended-here", state="visible", timeout=10_000)
    page.click("#session-ended-here a")

    page.wait_for_url("**/login/**")
    assert "8 saniye" not in page.inner_text("#session-ended-note")
    assert "işlem yapılmadığı için sona erdi" in page.inner_text("#session-ended-note")
    page.fill("#id_username", operator.username)
    page.fill("#id_password", PASSWORD)
    page.click("#login-form input[type=submit]")
    page.wait_for_url("**/billqueries/billquerybatch/add/")
    assert page.input_value("textarea[name=text]") == "1;01345677000"
    assert page.locator("#draft-restored").is_visible()
