"""The webhook's retries, without a network: which answers are tried again, how often, and the waits between."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import pytest

from acrm_pipelines.exports.destinations import DeliveryFailed
from acrm_pipelines.exports.destinations import webhook as webhook_module
from acrm_pipelines.exports.destinations.base import Delivery
from acrm_pipelines.exports.destinations.webhook import Webhook

URL = "http://127.0.0.1:9/hook?token=s3cret"


class Client:
    """Answers from a list: an int is a status, an exception is raised."""

    def __init__(self, answers: list):
        self.answers = list(answers)
        self.posts = 0

    def post(self, url, content, headers, follow_redirects):  # noqa: ANN001
        assert follow_redirects is False
        self.posts += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        request = httpx.Request("POST", url)
        if 300 <= answer < 400:
            return httpx.Response(answer, headers={"location": "http://elsewhere/"}, request=request)
        return httpx.Response(answer, text=f"answer {answer}", request=request)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waited: list[float] = []
    monkeypatch.setattr(webhook_module.time, "sleep", waited.append)
    return waited


def post(answers: list, max_attempts: int = 4, backoff: float = 0.5):
    client = Client(answers)
    dest = SimpleNamespace(url=URL, max_attempts=max_attempts, backoff_seconds=backoff)
    result = Delivery(location="x")
    outcome = Webhook([])._post(client, dest, "{}", {}, result, SimpleNamespace(key="hook"), [])
    return outcome, result, client


def test_5xx_and_transport_errors_are_retried_with_exponential_backoff(sleeps: list[float]) -> None:
    timeout = httpx.ConnectTimeout("timed out")
    outcome, result, client = post([503, timeout, 500, 200])
    assert outcome == ("sent", "")
    assert (result.attempts, client.posts) == (4, 4)
    assert sleeps == [0.5, 1.0, 2.0]


def test_the_last_failure_fails_the_export(sleeps: list[float]) -> None:
    with pytest.raises(DeliveryFailed) as caught:
        post([500, 502, httpx.ConnectError("refused")], max_attempts=3, backoff=0.25)
    assert str(caught.value) == (
        "export hook: http://127.0.0.1:9/hook?token=*** failed 3 times (last: ConnectError); "
        "0 rows were delivered before; re-run the export to resume (same batch keys)"
    )
    assert caught.value.__cause__ is None and caught.value.__context__ is None  # nothing chained that names the URL
    assert sleeps == [0.25, 0.5]  # none after the last attempt


def test_a_4xx_rejects_at_once(sleeps: list[float]) -> None:
    outcome, result, client = post([503, 422])
    assert outcome == ("rejected", "HTTP 422: answer 422")
    assert (result.attempts, client.posts, sleeps) == (2, 2, [0.5])


def test_a_redirect_fails_at_once(sleeps: list[float]) -> None:
    with pytest.raises(DeliveryFailed, match=r"answered HTTP 307 \(a redirect to http://elsewhere/\)"):
        post([307, 200])
    assert sleeps == []


def test_one_attempt_never_waits(sleeps: list[float]) -> None:
    with pytest.raises(DeliveryFailed, match=r"failed 1 times \(last: HTTP 503\)"):
        post([503], max_attempts=1)
    assert sleeps == []
