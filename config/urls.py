from django.contrib import admin
from django.urls import include, path, re_path
from django.utils.translation import gettext_lazy as _
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from security.session import session_keepalive, session_status
from upstream.api import errors as api_errors
from upstream.liveness.answers import healthz

admin.site.site_header = _("Finance back office")
admin.site.site_title = _("Finance back office")
admin.site.index_title = _("Paynet, WiseCP and Payofin")
admin.site.site_url = None  # the admin is the whole site

urlpatterns = [
    path("i18n/", include("django.conf.urls.i18n")),
    # For orchestrators and load balancers: the database answers and is migrated (no login).
    re_path(r"^healthz/?\Z", healthz, name="healthz"),
    # The idle timeout as pages see it (security/session.py).
    path("session/status.json", session_status, name="session-status"),
    path("session/keepalive/", session_keepalive, name="session-keepalive"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's start-up script as a file: no inline script (CSP).
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/", include("config.api_urls")),
    # Whatever else is under /api/ is a JSON 404, not the admin's catch-all below.
    re_path(r"^api(?:/[\s\S]*)?\Z", api_errors.not_found),
    path("", admin.site.urls),
]

handler500 = api_errors.server_error
handler403 = "upstream.admin.tools.permission_denied"
