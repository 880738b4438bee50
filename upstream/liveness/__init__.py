"""Liveness: the back office heals itself after a database outage (decision 015).

- `database`: is an error the database being away (not a bug), is it reachable, are the
  migrations applied
- `answers`: what the web answers while the database is away (503 JSON, a page in the admin's
  look) and `/healthz`
- `heartbeat`: workers' heartbeats, who was seen when, the dashboard's warning
- `worker`: the task worker that waits for the database and comes back instead of exiting
"""
