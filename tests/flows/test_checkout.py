"""One run at a time per checkout: a second run waits (and says so once), then refuses, naming the holder."""

import time

import pytest

from bayling.core.errors import PipelineError
from flows.runtime.checkout import hold_checkout


def test_a_waiting_run_says_once_who_holds_the_checkout_then_refuses(tmp_path):
    heard: list[str] = []
    with hold_checkout(tmp_path, "first-run"):
        started = time.monotonic()
        with pytest.raises(PipelineError, match=r"holds this checkout .*first-run.* after waiting 1s"):
            with hold_checkout(tmp_path, "second-run", wait_s=1.2, on_wait=heard.append):
                pass
        assert time.monotonic() - started >= 1.2
    assert len(heard) == 1 and "first-run" in heard[0] and "waiting up to 1s" in heard[0]
    with hold_checkout(tmp_path, "third-run", wait_s=1, on_wait=heard.append):  # free again: no wait, nothing said
        pass
    assert len(heard) == 1
