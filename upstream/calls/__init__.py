"""Calls to the upstreams: the HTTP client base, typed errors, redaction, the call log, health."""
