from rest_framework.routers import DefaultRouter

from subscriptions.api import SubscriptionInvoiceViewSet, SubscriptionViewSet
from upstream.api import JobViewSet, UpstreamCallViewSet

router = DefaultRouter()
router.register("subscriptions", SubscriptionViewSet)
router.register("subscription-invoices", SubscriptionInvoiceViewSet)
router.register("jobs", JobViewSet)
router.register("upstream-calls", UpstreamCallViewSet)
# billing and billqueries register their routes here too.
urlpatterns = router.urls
