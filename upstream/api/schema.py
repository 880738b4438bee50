import re

from drf_spectacular import openapi
from drf_spectacular.plumbing import get_view_model
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework.schemas.utils import get_pk_description
from rest_framework.settings import api_settings

from upstream.api.routers import Router

_INTEGER_LOOKUP = re.compile(rf"\(\?P<(\w+)>{re.escape(Router.integer_lookup_regex)}\)")


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's schema, with each `{id}` that Router restricts to digits described as
    the integer it is (from a regex route spectacular would say "string with a pattern")."""

    def get_override_parameters(self):
        parameters = list(super().get_override_parameters())
        model = get_view_model(self.view, emit_warnings=False)
        for name in _INTEGER_LOOKUP.findall(self.path_regex):
            description = get_pk_description(model, model._meta.pk) if model else ""
            parameters.insert(
                0,
                OpenApiParameter(
                    "id" if name == "pk" and api_settings.SCHEMA_COERCE_PATH_PK else name,
                    OpenApiTypes.INT,
                    OpenApiParameter.PATH,
                    description=description,
                ),
            )
        return parameters
