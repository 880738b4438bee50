"""A fake transport for client tests: mount it on a requests.Session to answer anything."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

Answer = tuple[int, Any] | tuple[int, Any, dict[str, str]] | Exception


class FakeTransport(BaseAdapter):
    """Answers each request with `responder(request)`: (status, body[, headers]) or an exception.

    A dict or list body is sent as JSON, bytes or str as they are. `sent` keeps every request.
    """

    def __init__(self, responder: Callable[[requests.PreparedRequest], Answer] | list[Answer]):
        super().__init__()
        if isinstance(responder, list):
            answers = list(responder)
            self.responder = lambda request: answers.pop(0) if len(answers) > 1 else answers[0]
        else:
            self.responder = responder
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.sent.append(request)
        answer = self.responder(request)
        if isinstance(answer, Exception):
            raise answer
        status, body, *rest = answer
        headers = rest[0] if rest else {"Content-Type": "application/json"}
        response = requests.Response()
        response.status_code = status
        if isinstance(body, bytes):
            response._content = body
        elif isinstance(body, str):
            response._content = body.encode("utf-8")
        else:
            response._content = json.dumps(body, ensure_ascii=False).encode("utf-8")
        response.headers = CaseInsensitiveDict(headers)
        response.encoding = "utf-8"
        response.request = request
        response.url = request.url or ""
        return response

    def close(self) -> None:
        pass

    def bodies(self) -> list[Any]:
        return [json.loads(r.body) if r.body else None for r in self.sent]


def fake_session(responder: Callable | list) -> tuple[requests.Session, FakeTransport]:
    transport = FakeTransport(responder)
    session = requests.Session()
    session.mount("http://", transport)
    session.mount("https://", transport)
    return session, transport
