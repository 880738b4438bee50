"""Settings: every value comes from the environment (django-environ), with safe local defaults.

Production is `config.settings_production`, which takes these and refuses to start without secrets.
"""

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import environ
from csp.constants import NONCE, NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

SANDBOX_URL = env("SANDBOX_URL", default="http://127.0.0.1:8001")

SECRET_KEY = env("DJANGO_SECRET_KEY", default="dev-only-insecure-key-do-not-use-in-production")
DEBUG = env.bool("DJANGO_DEBUG", default=True)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    # Trigram indexes (OpClass in index expressions); harmless on SQLite.
    "django.contrib.postgres",
    "rest_framework",
    # API tokens, hashed at rest with an expiry (django-rest-knox, named "API tokens").
    "security.apps.ApiTokensConfig",
    "django_filters",
    "drf_spectacular",
    # Swagger UI served from our own static files: the API docs need no CDN under the CSP.
    "drf_spectacular_sidecar",
    "csp",
    "django_tasks",
    # Before django_tasks_db: its `db_worker` command (one that outlives the database) takes the
    # library's name, as staticfiles' runserver takes Django's.
    "upstream",
    "upstream.apps.TasksDbConfig",  # django_tasks_db, named in the reader's language
    # Login lockout; before "security", whose log receivers read what axes noted on a request.
    "axes",
    "subscriptions",
    "billing",
    "billqueries",
    "security",
    "sandbox",
]

MIDDLEWARE = [
    # Outermost: a request that failed because the database is away answers 503, not 500.
    "upstream.liveness.answers.DatabaseUnavailableMiddleware",
    # So it sees every 401 and 403 answer (CSRF failures too).
    "security.middleware.RefusalLog",
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy (django-csp) and Permissions-Policy on every answer.
    "csp.middleware.CSPMiddleware",
    "security.middleware.PermissionsPolicy",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "config.middleware.TurkishUnlessChosen",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "security.middleware.IdleSessionTimeout",
    "security.personal.PersonalDataMasking",
    "django.contrib.messages.middleware.MessageMiddleware",
    "upstream.console.notices.JobNoticeMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Turns a lockout noted during the login into the locked-out page (security/lockout.py).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
                "upstream.console.context_processors.upstream_modes",
                "security.session.idle_note",
                "security.session.login_attempts",
            ],
            # Turkish-aware |capfirst and |upper for every template (upstream/l10n/capitals.py).
            "builtins": ["upstream.templatetags.turkish_builtins"],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Job threads, the worker and the web process write concurrently: WAL, IMMEDIATE
    # transactions and a busy timeout, or SQLite answers "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DJANGO_CONN_MAX_AGE", default=60))
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# django-axes first: a locked-out username and address pair is refused before its password is
# even checked, so the right password does not get in either.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Lockout (django-axes): LOGIN_FAILURE_LIMIT failed logins for one username from one address
# lock that pair for LOGIN_COOLOFF_MINUTES after the last failure; other users and addresses
# go on. A successful login clears the count. `manage.py axes_reset` unlocks everyone.
AXES_ENABLED = env.bool("LOGIN_LOCKOUT_ENABLED", default=True)
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "security.lockout.lockout_response"
AXES_CLIENT_IP_CALLABLE = "security.log.client_ip"
AXES_ENABLE_ACCESS_FAILURE_LOG = True
# Reverse proxies in front of the web server that append the client to X-Forwarded-For (0: the
# server is reached directly; REMOTE_ADDR is the client). Lockouts, throttles and the security
# log use the address the outermost proxy saw.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
# A session unused this long ends (each request moves the deadline); 0 turns it off.
# DJANGO_SESSION_COOKIE_AGE (production) stays the limit of any session.
SESSION_IDLE_SECONDS = env.int("SESSION_IDLE_SECONDS", default=30 * 60)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Turkish first: the finance team works in Turkish; English is one click away.
LANGUAGE_CODE = "tr"
LANGUAGES = [("tr", _("Turkish")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Europe/Istanbul"
USE_I18N = True
USE_TZ = True
USE_THOUSAND_SEPARATOR = True
FORMAT_MODULE_PATH = ["config.formats"]

STATIC_URL = "static/"
STATIC_ROOT = env("DJANGO_STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))

LOGIN_URL = "admin:login"

# Headers every answer carries (decision note "at-the-door-two"). The Content-Security-Policy
# (django-csp): scripts only from our own static files, or inline with this request's nonce
# (the batch pages' two small scripts); no inline handlers. Styles may be inline: Django's
# admin, its date pickers, the server-drawn SVG charts and Swagger UI set style attributes,
# which a nonce cannot cover, and a style cannot run code. Images also as data: URIs (the
# admin's and Swagger UI's icons). No frames, no plugins, forms post only here.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}
# A link followed out of the back office names no page of it (record ids, filters).
SECURE_REFERRER_POLICY = "same-origin"
# Powerful browser features no page here uses, off for every page and anything it embeds.
PERMISSIONS_POLICY = (
    "accelerometer=(), autoplay=(), camera=(), display-capture=(), geolocation=(), "
    "gyroscope=(), magnetometer=(), microphone=(), midi=(), payment=(), usb=()"
)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        # `Authorization: Token <key>`, looked up by its digest (security/tokens.py); an
        # address over API_THROTTLE_BAD_TOKEN refused tokens is not looked up (security/auth.py).
        "security.auth.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["upstream.api.permissions.IsStaffWithModelPermissions"],
    "DEFAULT_PAGINATION_CLASS": "upstream.api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["upstream.api.filters.FilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "upstream.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "upstream.api.errors.exception_handler",
    "COERCE_DECIMAL_TO_STRING": True,
    # Rates: API_THROTTLE_USER and API_THROTTLE_ANON below (security/throttles.py).
    "DEFAULT_THROTTLE_CLASSES": [
        "security.throttles.AnonRateThrottle",
        "security.throttles.UserRateThrottle",
    ],
}
# API tokens (django-rest-knox): only a digest is stored; a token unused for
# API_TOKEN_IDLE_HOURS expires (each use moves it), none outlives API_TOKEN_MAX_DAYS, and a
# password change ends them (security/tokens.py).
API_TOKEN_IDLE_HOURS = env.float("API_TOKEN_IDLE_HOURS", default=7 * 24)
API_TOKEN_MAX_DAYS = env.float("API_TOKEN_MAX_DAYS", default=30)
REST_KNOX = {
    "AUTH_HEADER_PREFIX": "Token",
    "TOKEN_TTL": timedelta(hours=API_TOKEN_IDLE_HOURS),
    "AUTO_REFRESH": True,
    "AUTO_REFRESH_MAX_TTL": timedelta(days=API_TOKEN_MAX_DAYS),
}
# Requests to the API per user and per anonymous address ("N/second|minute|hour|day"; empty:
# no limit). Counted in the cache below.
API_THROTTLE_USER = env("API_THROTTLE_USER", default="600/minute")
API_THROTTLE_ANON = env("API_THROTTLE_ANON", default="30/minute")
# Refused tokens (wrong, expired, revoked) per address; over it, every token it sends is
# answered 429 unread, a right one too.
API_THROTTLE_BAD_TOKEN = env("API_THROTTLE_BAD_TOKEN", default="30/minute")
# The cache (API throttle counts): per process locally (one runserver); production defaults to
# the database cache (config/settings_production.py), or CACHE_URL=redis://host:6379/1.
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}
# Lists (admin changelists, API lists) count their rows while PostgreSQL's planner expects that
# to cost at most this much (its units, about one per page read; 2,000 is a few milliseconds);
# above it they give the planner's estimate ("about 1,000,000"): upstream/lists/counting.py.
LIST_COUNT_BUDGET = env.float("LIST_COUNT_BUDGET", default=2000.0)
SPECTACULAR_SETTINGS = {
    "TITLE": "Finance back office API",
    "DESCRIPTION": "Paynet subscriptions, WiseCP invoice items and Payofin bill queries.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from drf-spectacular-sidecar's static files, not a CDN (the CSP allows 'self').
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # Several models have a "state" or "outcome" field with different choices: name each enum.
    "ENUM_NAME_OVERRIDES": {
        "JobStateEnum": "upstream.models.Job.State",
        "JobItemStateEnum": "upstream.models.JobItem.State",
        "JobItemOutcomeEnum": "upstream.models.JobItem.Outcome",
        "CallOutcomeEnum": "upstream.models.Outcome",
        "BillQueryBatchStateEnum": "billqueries.models.BillQueryBatch.State",
        "BillQueryLineStateEnum": "billqueries.models.BillQueryLine.State",
        "BillQueryLineOutcomeEnum": "billqueries.models.BillQueryLine.Outcome",
        # A subscription's status uses its payment records' table (paynet.md §3).
        "PaynetStatusEnum": "subscriptions.models.InvoiceStatus",
        "InvoiceStatusEnum": "billing.models.InvoiceStatus",
        "TaxationTypeEnum": "billing.models.TaxationType",
    },
}

# Background work: django-tasks with the database backend by default.
TASKS_BACKEND = env("TASKS_BACKEND", default="database")
_TASK_BACKENDS = {
    "database": "django_tasks_db.DatabaseBackend",
    "immediate": "django_tasks.backends.immediate.ImmediateBackend",
    "dummy": "django_tasks.backends.dummy.DummyBackend",
    "rq": "django_tasks_rq.RQBackend",
}
if TASKS_BACKEND not in _TASK_BACKENDS:
    raise ImproperlyConfigured(
        f"TASKS_BACKEND={TASKS_BACKEND!r}: use one of {', '.join(sorted(_TASK_BACKENDS))}"
    )
TASKS = {"default": {"BACKEND": _TASK_BACKENDS[TASKS_BACKEND]}}
if TASKS_BACKEND == "rq":
    # Past one machine: tasks in Redis, workers run `manage.py rqworker --with-scheduler
    # --job-class django_tasks_rq.Job default`.
    INSTALLED_APPS.append("django_rq")
    RQ_QUEUES = {"default": {"URL": env("REDIS_URL", default="redis://127.0.0.1:6379/0")}}
    # RQ's worker, which also puts missing periodic chains back at its start and takes the
    # scheduler over from a dead worker within 30 s (upstream/liveness/rqworker.py).
    RQ = {"WORKER_CLASS": "upstream.liveness.rqworker.Worker"}

# Task workers: how often each writes its heartbeat; after how long without one the dashboard
# warns and `worker_alive` fails; the longest wait between two probes of a database that went
# away (the worker waits for it instead of exiting).
WORKER_HEARTBEAT_SECONDS = env.float("WORKER_HEARTBEAT_SECONDS", default=15)
WORKER_STALE_SECONDS = env.float("WORKER_STALE_SECONDS", default=90)
WORKER_DB_BACKOFF_CAP = env.float("WORKER_DB_BACKOFF_CAP", default=10)

# The job runner: how long a claimed item is ours, how many items one task claims at a time.
JOBS_LEASE_SECONDS = env.int("JOBS_LEASE_SECONDS", default=120)
JOBS_CHUNK_SIZE = env.int("JOBS_CHUNK_SIZE", default=64)
JOBS_SWEEP_INTERVAL_SECONDS = env.int("JOBS_SWEEP_INTERVAL_SECONDS", default=30)
# The sweep recomputes the dashboard's whole-table totals when they are older than this.
DASHBOARD_TOTALS_SECONDS = env.int("DASHBOARD_TOTALS_SECONDS", default=60)
# The mirror follows each upstream: a periodic sync every this many seconds (0 = off).
SYNC_INTERVAL_SECONDS = env.int("SYNC_INTERVAL_SECONDS", default=900)
# KVKK: personal data older than this many days is masked in the call log and the record
# history by the periodic sweep (both mask it when written; this bounds anything older or
# missed). 0 keeps it. docs/decisions/at-the-door-two-personal-data.md.
PERSONAL_DATA_RETENTION_DAYS = env.float("PERSONAL_DATA_RETENTION_DAYS", default=365)
# Where staff reach the back office (links in e-mails), and how mail is sent (console locally).
# Links in e-mails: where `make run` serves (WEB_PORT) unless said otherwise.
BACKOFFICE_URL = env(
    "BACKOFFICE_URL", default=f"http://127.0.0.1:{env('WEB_PORT', default='8000')}"
)
EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
# With EMAIL_BACKEND=django.core.mail.backends.filebased.EmailBackend (make run's): one file a mail.
EMAIL_FILE_PATH = env("EMAIL_FILE_PATH", default=str(BASE_DIR / "var" / "mail"))
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="backoffice@localhost")
EMAIL_HOST = env("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
# Four-eyes approval: a push of this many records, or of this many ₺, waits for a second person.
APPROVAL_MIN_ITEMS = env.int("APPROVAL_MIN_ITEMS", default=100)
APPROVAL_MIN_AMOUNT = Decimal(env.str("APPROVAL_MIN_AMOUNT", default="50000"))
APPROVAL_TTL_HOURS = env.float("APPROVAL_TTL_HOURS", default=24)
# Four eyes over time: a push also waits when it, plus what the same person sent without
# approval in the last APPROVAL_WINDOW_HOURS, reaches these (split pushes add up).
APPROVAL_WINDOW_HOURS = env.float("APPROVAL_WINDOW_HOURS", default=24)
# Unset: five times APPROVAL_MIN_ITEMS and APPROVAL_MIN_AMOUNT (upstream/pushes/approvals.py).
APPROVAL_WINDOW_ITEMS = env.int("APPROVAL_WINDOW_ITEMS", default=None)
APPROVAL_WINDOW_AMOUNT = env.str("APPROVAL_WINDOW_AMOUNT", default=None)

UPSTREAM_CONNECT_TIMEOUT = env.float("UPSTREAM_CONNECT_TIMEOUT", default=3.05)
UPSTREAM_READ_TIMEOUT = env.float("UPSTREAM_READ_TIMEOUT", default=15.0)
UPSTREAM_MAX_ATTEMPTS = env.int("UPSTREAM_MAX_ATTEMPTS", default=3)
UPSTREAM_BACKOFF_BASE = env.float("UPSTREAM_BACKOFF_BASE", default=0.5)
UPSTREAM_BACKOFF_CAP = env.float("UPSTREAM_BACKOFF_CAP", default=8.0)
# The circuit breaker of each upstream (upstream/calls/breaker.py): this many consecutive
# failed calls (transport, timeout, 5xx) open it; after the cooldown one probe call may go.
BREAKER_FAILURES = env.int("BREAKER_FAILURES", default=5)
BREAKER_COOLDOWN_SECONDS = env.float("BREAKER_COOLDOWN_SECONDS", default=60.0)

PAYNET_BASE_URL = env("PAYNET_BASE_URL", default=f"{SANDBOX_URL}/paynet")
PAYNET_SECRET_KEY = env("PAYNET_SECRET_KEY", default="sck_sandbox_paynet_secret")
PAYNET_CONCURRENCY = env.int("PAYNET_CONCURRENCY", default=16)
PAYNET_RATE_LIMIT = env.float("PAYNET_RATE_LIMIT", default=0.0)  # requests/s; 0: no cap

WISECP_API_URL = env("WISECP_API_URL", default=f"{SANDBOX_URL}/wisecp/api/")
WISECP_API_KEY = env("WISECP_API_KEY", default="sandbox-wisecp-api-key")
WISECP_CONCURRENCY = env.int("WISECP_CONCURRENCY", default=8)
WISECP_RATE_LIMIT = env.float("WISECP_RATE_LIMIT", default=0.0)  # requests/s; 0: no cap

PAYOFIN_BASE_URL = env("PAYOFIN_BASE_URL", default=f"{SANDBOX_URL}/payofin")
PAYOFIN_API_KEY = env("PAYOFIN_API_KEY", default="3f0126be-0000-4000-8000-sandboxapikey")
PAYOFIN_SECRET_KEY = env("PAYOFIN_SECRET_KEY", default="3f0126be-0000-4000-8000-sandboxsecret")
PAYOFIN_CONCURRENCY = env.int("PAYOFIN_CONCURRENCY", default=8)
PAYOFIN_RATE_LIMIT = env.float("PAYOFIN_RATE_LIMIT", default=0.0)  # requests/s; 0: no cap

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("DJANGO_LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # Logins, logouts, failed logins, lockouts, password changes, 401/403 answers, API 429s
        # (security/log.py); django-axes's own lines at WARNING (failures and lockouts).
        "backoffice.security": {"level": env("SECURITY_LOG_LEVEL", default="INFO")},
        "axes": {"level": "WARNING"},
    },
}
STATICFILES_DIRS = [BASE_DIR / "static"]
