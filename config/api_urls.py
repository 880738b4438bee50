from importlib import import_module

from upstream.api.routers import Router

router = Router()
# Each app's api.py registers its own routes, so apps do not edit a shared list.
for module in ("upstream.api.views", "subscriptions.api", "billing.api", "billqueries.api"):
    import_module(module).register_routes(router)
urlpatterns = router.urls
