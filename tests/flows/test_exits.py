"""One exit code per way a flow command ends, whichever flow it is (flows/runtime/exits.py)."""

from __future__ import annotations

import pytest
from prefect.states import Completed, Failed

from bayling.core.errors import PipelineError
from flows.runtime import exits
from flows.runtime.interruption import INTERRUPTION


def never_called(state):  # type: ignore[no-untyped-def]
    raise AssertionError("a flow that did not finish has nothing to report")


def raising(exc: BaseException):  # type: ignore[no-untyped-def]
    def run():  # type: ignore[no-untyped-def]
        raise exc

    return run


@pytest.fixture(autouse=True)
def no_ctrl_c(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(INTERRUPTION, "requested", False)


def test_a_finished_flow_gets_what_its_report_says(capsys: pytest.CaptureFixture):
    assert exits.exit_code(lambda: Completed(message="nothing to do"), lambda state: 7) == 7
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(("state", "code"), [
    (exits.refused(PipelineError("another retrain run holds this checkout")), exits.REFUSED),
    (Failed(message="stage 'train' failed (exit 1)"), exits.FAILED),
], ids=["refused", "failed"])
def test_a_failed_flow_is_one_error_line_and_a_refusal_is_told_from_a_failure(state, code, capsys: pytest.CaptureFixture):
    assert exits.exit_code(lambda: state, never_called) == code
    assert capsys.readouterr().err == f"error: {state.message}\n"


def test_a_failed_flow_after_the_first_ctrl_c_is_interrupted(capsys: pytest.CaptureFixture):
    INTERRUPTION.requested = True
    assert exits.exit_code(lambda: exits.refused("interrupted during dvc pull"), never_called) == exits.INTERRUPTED
    assert capsys.readouterr().err == "error: interrupted during dvc pull\n"


def test_a_user_error_before_or_around_the_flow_is_refused(capsys: pytest.CaptureFixture):
    assert exits.exit_code(raising(PipelineError("train.max_steps: must be positive")), never_called) == exits.REFUSED
    assert capsys.readouterr().err == "error: train.max_steps: must be positive\n"


def test_ctrl_c_says_what_it_carries_or_else_what_the_flow_says(capsys: pytest.CaptureFixture):
    assert exits.exit_code(raising(KeyboardInterrupt()), never_called, interrupted="interrupted; resume later") == 130
    assert exits.exit_code(raising(KeyboardInterrupt("interrupted during the stages")), never_called) == 130
    assert capsys.readouterr().err == "error: interrupted; resume later\nerror: interrupted during the stages\n"
