"""REST API pieces every app shares: errors, filters, pagination, permissions, idempotency,
schema, and the shared layer's own endpoints (calls, jobs, upstreams, drift, timelines)."""
