"""The call log: each exchange with an upstream, written as an UpstreamCall row."""

from __future__ import annotations

from django.db.models import Model

from upstream.actors import User, actor_id_of
from upstream.calls.breaker import breaker_record
from upstream.calls.client import Exchange
from upstream.models import UpstreamCall


def target_of(obj: Model | None) -> tuple[str, str]:
    if obj is None:
        return "", ""
    return obj._meta.label_lower, str(obj.pk)


def upstream_call_from_exchange(
    exchange: Exchange,
    *,
    actor_id: int | None = None,
    job_id: int | None = None,
    job_item_id: int | None = None,
    target_type: str = "",
    target_id: str = "",
    target_repr: str = "",
) -> UpstreamCall:
    return UpstreamCall(
        service=exchange.service,
        operation=exchange.operation,
        method=exchange.method,
        url=exchange.url[:500],
        request_headers=exchange.request_headers,
        request=exchange.request_body,
        status_code=exchange.status_code,
        response=exchange.response_body,
        upstream_code=str(exchange.upstream_code)[:32],
        upstream_message=exchange.upstream_message,
        outcome=exchange.outcome,
        error=exchange.error,
        duration_ms=exchange.duration_ms,
        attempt=exchange.attempt,
        mutating=exchange.mutating,
        created_at=exchange.started_at,
        actor_id=actor_id,
        job_id=job_id,
        job_item_id=job_item_id,
        target_type=target_type,
        target_id=target_id,
        target_repr=target_repr[:200],
    )


class DbCallRecorder:
    """Writes each request as a pending row before it is sent and finishes it after.

    The pending row is committed on its own, outside any transaction, so a crash or a later
    rollback cannot erase the fact that a request went out (the call log is the audit trail).
    """

    def __init__(
        self, *, actor: User | None = None, target: Model | None = None, target_repr: str = ""
    ) -> None:
        self.actor_id = actor_id_of(actor)
        self.target_type, self.target_id = target_of(target)
        self.target_repr = target_repr or (str(target) if target is not None else "")
        self.calls: list[UpstreamCall] = []

    def started(self, exchange: Exchange) -> None:
        call = upstream_call_from_exchange(
            exchange,
            actor_id=self.actor_id,
            target_type=self.target_type,
            target_id=self.target_id,
            target_repr=self.target_repr,
        )
        call.save(force_insert=True)
        exchange.call_id = call.pk
        self.calls.append(call)

    def finished(self, exchange: Exchange) -> None:
        UpstreamCall.objects.filter(pk=exchange.call_id, outcome="pending").update(
            status_code=exchange.status_code,
            response=exchange.response_body,
            upstream_code=str(exchange.upstream_code)[:32],
            upstream_message=exchange.upstream_message,
            outcome=exchange.outcome,
            error=exchange.error,
            duration_ms=exchange.duration_ms,
        )
        # Syncs and refreshes count for the upstream's health like any push.
        breaker_record([exchange])

    @property
    def last_call_id(self) -> int | None:
        return self.calls[-1].pk if self.calls else None
