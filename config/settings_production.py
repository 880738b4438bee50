"""Production: every secret comes from the environment; unsafe defaults are refused at start."""

import os

from django.core.exceptions import ImproperlyConfigured

REQUIRED = (
    "DJANGO_SECRET_KEY",
    "DJANGO_ALLOWED_HOSTS",
    "DATABASE_URL",
    "PAYNET_BASE_URL",
    "PAYNET_SECRET_KEY",
    "WISECP_API_URL",
    "WISECP_API_KEY",
    "PAYOFIN_BASE_URL",
    "PAYOFIN_API_KEY",
    "PAYOFIN_SECRET_KEY",
)
_missing = [name for name in REQUIRED if not os.environ.get(name)]
if _missing:
    raise ImproperlyConfigured(
        "Production settings need these environment variables: " + ", ".join(_missing)
    )
os.environ.setdefault("DJANGO_DEBUG", "false")

# The API throttles count in the cache, which every web process must share: without
# CACHE_URL, the database's (its table is made by `migrate`, security/apps.py).
os.environ.setdefault("CACHE_URL", "dbcache://backoffice_cache")

from .settings import *  # noqa: E402,F403
from .settings import env  # noqa: E402

# A per-process cache counts each process's requests apart: with three web processes the first
# 429 came at three times the rate. Refused unless exactly one process serves.
_PER_PROCESS = ("LocMemCache", "DummyCache")
_one_process = env.int("WEB_CONCURRENCY", default=0) == 1
if CACHES["default"]["BACKEND"].endswith(_PER_PROCESS) and not _one_process:  # noqa: F405
    raise ImproperlyConfigured(
        f"CACHE_URL={os.environ.get('CACHE_URL')!r} is a per-process cache: with several web "
        "processes the API throttles count each process apart. Use the database cache "
        "(dbcache://backoffice_cache, the default) or Redis (redis://host:6379/1), or set "
        "WEB_CONCURRENCY=1 when exactly one process serves."
    )

DEBUG = env.bool("DJANGO_DEBUG", default=False)
# The simulator of the three upstreams is for development and tests; nothing in the product
# imports it, and its `manage.py sandbox` command must not exist where real money moves.
INSTALLED_APPS = [app for app in INSTALLED_APPS if app != "sandbox"]  # noqa: F405
if len(SECRET_KEY) < 50:  # noqa: F405
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be at least 50 random characters.")

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
# Probes reach the web process directly, over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz/?$"]
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_AGE = env.int("DJANGO_SESSION_COOKIE_AGE", default=8 * 60 * 60)
