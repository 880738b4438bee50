"""The server's WSGI module: the application loaded, then its long-lived objects frozen."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import gc, json, sys
before = gc.get_freeze_count()
from config.wsgi import application
print(json.dumps({
    "before": before,
    "frozen": gc.get_freeze_count(),
    "urlconf_loaded": "config.urls" in sys.modules,
    "callable": callable(application),
}))
"""


def test_the_wsgi_module_freezes_what_startup_loaded_urlconf_included():
    """A full collection during a request must not walk the whole application again: the
    objects startup made (apps, models, the URLconf's views) are out of the collector's sight."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "DJANGO_DEBUG": "false"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    seen = json.loads(done.stdout.strip().splitlines()[-1])

    assert seen["before"] == 0
    assert seen["urlconf_loaded"] and seen["callable"]
    # Django, the admin, DRF and the project's modules: tens of thousands of objects.
    assert seen["frozen"] > 10_000
