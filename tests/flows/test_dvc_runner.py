"""What the flows retry: transient failures as the tools print them, and nothing that merely looks like one."""

import pytest

from flows.runtime.dvc_runner import is_transient

TRANSIENT = [
    "ERROR: Unable to acquire lock. Most likely another DVC process is running or was terminated abruptly.",
    "ERROR: failed to reproduce 'train': 'data/tokenized' is busy, it is being blocked by:\n  (PID 4242): dvc repro",
    "botocore.exceptions.EndpointConnectionError: Could not connect to the endpoint URL: \"http://127.0.0.1:9/b\"",
    "cannot read s3://b/k (after up to 5 attempts): An error occurred (SlowDown) when calling the HeadObject operation",
    "An error occurred (503) when calling the PutObject operation (reached max retries: 4): Service Unavailable",
    "urllib3.exceptions.ReadTimeoutError: HTTPConnectionPool(host='127.0.0.1', port=5000): Read timed out. (read timeout=120)",
    "requests.exceptions.ConnectionError: ('Connection aborted.', ConnectionResetError(104, 'Connection reset by peer'))",
    "sqlite3.OperationalError: database is locked",
]
NOT_TRANSIENT = [
    "evaluated 503 segments in 12 directions",
    "INFO no decision yet: the reviewer timed out waiting for the report",
    "ERROR: 1 problem in params.yaml:\n  params.yaml:58: train.max_steps: Input should be greater than 0",
    "stage 'train' failed (exit 1): RuntimeError: shape mismatch",
    "InternalError: the tokenizer has no EOS token",
]


@pytest.mark.parametrize("message", TRANSIENT)
def test_transient_failures_are_retried(message):
    assert is_transient(message)


@pytest.mark.parametrize("message", NOT_TRANSIENT)
def test_ordinary_failures_are_not(message):
    assert not is_transient(message)
