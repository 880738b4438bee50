from rest_framework.permissions import DjangoModelPermissions


class IsStaffWithModelPermissions(DjangoModelPermissions):
    """Staff only, and reading needs the view permission too (DRF's default lets anyone read)."""

    perms_map = {
        **DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "OPTIONS": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
    }

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated and request.user.is_staff):
            return False
        return super().has_permission(request, view)


class IsStaff(IsStaffWithModelPermissions):
    """For actions that push: the service checks the push permission itself, as in the admin."""

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)


class CanReadUpstreamHealth(IsStaffWithModelPermissions):
    """Upstream health is read from the call log: staff who may view the call log."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(
            user
            and user.is_authenticated
            and user.is_staff
            and user.has_perm("upstream.view_upstreamcall")
        )
