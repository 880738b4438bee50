"""Admin pieces every app shares (lists, filters, tools, approvals) and the admin pages of the
shared layer's own models: the call log, jobs, job items and the drift report."""

from upstream.admin import drift, site  # noqa: F401  (registers their ModelAdmins)
