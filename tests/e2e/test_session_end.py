"""A page that polls its progress notices when the session ends, instead of freezing."""

from __future__ import annotations

import pytest
from django.contrib.sessions.models import Session

from upstream.models import Job

from .conftest import log_in

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
