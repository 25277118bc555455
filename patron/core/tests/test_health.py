"""OPS-4: health, readiness and metrics."""

import pytest


@pytest.mark.django_db
def test_ops_4_health_ready_and_metrics(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "database": "ok", "pending_migrations": 0}
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert b"patron_http_requests_total" in metrics.content


def test_ops_4_request_id_is_echoed(client):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="abcdef123456")
    assert response["X-Request-Id"] == "abcdef123456"
