"""Production settings pass `check --deploy` and refuse to start without their secrets."""

import os
import subprocess
import sys
from pathlib import Path

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
