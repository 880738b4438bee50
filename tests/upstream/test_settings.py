"""Production settings pass `check --deploy` and refuse to start without their secrets."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings_production",
    "DJANGO_SECRET_KEY": "x" * 20 + "-production-secret-key-of-sufficient-length-0123456789",
    "DJANGO_ALLOWED_HOSTS": "backoffice.example.com",
    "DATABASE_URL": "sqlite:////tmp/backoffice-deploy-check.sqlite3",
    "PAYNET_BASE_URL": "https://api.paynet.com.tr",
    "PAYNET_SECRET_KEY": "sck_live_example",
    "WISECP_API_URL": "https://billing.example.com/api/",
    "WISECP_API_KEY": "wisecp-example",
    "PAYOFIN_BASE_URL": "https://api.payofin.com",
    "PAYOFIN_API_KEY": "3f0126be-aaaa-bbbb-cccc-06025352594a",
    "PAYOFIN_SECRET_KEY": "3f0126be-dddd-eeee-ffff-06025352594a",
}


def manage(env: dict, *args: str) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "PAYNET_", "WISECP_", "PAYOFIN_", "DATABASE_URL"))
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
    )


def test_production_settings_pass_the_deploy_check():
    result = manage(PRODUCTION_ENV, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_settings_refuse_to_start_without_secrets():
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "PAYNET_SECRET_KEY"}
    result = manage(env, "check")
    assert result.returncode != 0
    assert "PAYNET_SECRET_KEY" in result.stderr
    assert "sck_live_example" not in result.stderr


def test_production_settings_leave_the_sandbox_out():
    result = manage(
        PRODUCTION_ENV,
        "shell",
        "--verbosity",
        "0",
        "-c",
        "from django.conf import settings; from django.core.management import get_commands; "
        "print('sandbox' in settings.INSTALLED_APPS, 'sandbox' in get_commands(), "
        "'billqueries_demo' in get_commands())",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == ["False", "False", "True"]


def test_links_in_e_mails_follow_the_web_port():
    result = manage(
        {"WEB_PORT": "8123"},
        "shell",
        "--verbosity",
        "0",
        "-c",
        "from django.conf import settings; print(settings.BACKOFFICE_URL)",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "http://127.0.0.1:8123"


@pytest.mark.django_db
def test_demo_users_have_e_mail_addresses_so_job_notices_reach_them(capsys):
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from upstream.groups import groups_ensure

    groups_ensure()
    call_command("bootstrap_admin", "--demo-users")
    users = get_user_model().objects.filter(
        username__in=["admin", "operator", "approver", "viewer"]
    )
    assert sorted(u.email for u in users) == [
        "admin@backoffice.example",
        "approver@backoffice.example",
        "operator@backoffice.example",
        "viewer@backoffice.example",
    ]


def test_make_run_keeps_e_mails_in_files_with_links_to_its_port():
    script = (ROOT / "scripts" / "run.sh").read_text()
    assert "django.core.mail.backends.filebased.EmailBackend" in script
    assert "BACKOFFICE_URL=${BACKOFFICE_URL:-http://127.0.0.1:$WEB_PORT}" in script
