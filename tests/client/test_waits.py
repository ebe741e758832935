"""The client's job waits as flows: every poll is a GET of the job, the handle keeps the latest copy, a failed job
raises JobFailed with the server's reason and a wait past its timeout raises WaitTimeout naming the job's state.
The flows are driven here with the answers a server would give, in order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from ganforge._exceptions import JobFailed, WaitTimeout
from ganforge._models import Generation, Projection, Translation
from ganforge._requests import Action, Request, Sleep, Steps, wait_projection, wait_translation

# The model of each job kind, by the first segment of its path.
MODELS: dict[str, Any] = {"generations": Generation, "translations": Translation, "projections": Projection}


def drive(steps: Steps[Any], answers: list[dict[str, Any]]) -> tuple[Any, list[Action]]:
    """Run a flow, answering each Request with the next JSON body parsed by the request's own model; returns what the
    flow returned and every action it took."""
    actions: list[Action] = []
    reply: Any = None
    try:
        while True:
            action = steps.send(reply)
            actions.append(action)
            reply = None
            if isinstance(action, Request):
                reply = MODELS[action.path.split("/")[1]].from_json(answers.pop(0))
    except StopIteration as stop:
        assert not answers, "the flow stopped before reading every answer"
        return stop.value, actions


@dataclass
class TranslationHandle:
    translation: Translation


@dataclass
class ProjectionHandle:
    projection: Projection


def translation(status: str, error: str | None = None) -> dict[str, Any]:
    return {"id": "tr_1", "run_id": "run_1", "status": status, "error": error}


def test_a_wait_polls_until_done_and_keeps_each_copy() -> None:
    handle = TranslationHandle(Translation.from_json(translation("queued")))
    steps = wait_translation(handle, timeout=None, poll_interval=0.25)
    done, actions = drive(steps, [translation("running"), translation("succeeded")])
    assert done.status == "succeeded" and handle.translation is done
    assert [type(a).__name__ for a in actions] == ["Sleep", "Request", "Sleep", "Request"]
    assert all(a.seconds == 0.25 for a in actions if isinstance(a, Sleep))
    assert {a.path for a in actions if isinstance(a, Request)} == {"/translations/tr_1"}


def test_a_done_job_is_returned_without_a_request() -> None:
    handle = TranslationHandle(Translation.from_json(translation("succeeded")))
    done, actions = drive(wait_translation(handle, timeout=0, poll_interval=1), [])
    assert done is handle.translation and actions == []


def test_a_failed_job_raises_the_servers_reason_and_the_handle_holds_it() -> None:
    handle = ProjectionHandle(Projection.from_json({"id": "pj_1", "status": "running"}))
    with pytest.raises(JobFailed, match="pj_1 failed: the checkpoint is gone") as failed:
        drive(
            wait_projection(handle, timeout=None, poll_interval=0),
            [{"id": "pj_1", "status": "failed", "error": "the checkpoint is gone"}],
        )
    assert failed.value.job_id == "pj_1" and handle.projection.status == "failed"


def test_a_wait_past_its_timeout_names_the_job_and_its_state() -> None:
    handle = TranslationHandle(Translation.from_json(translation("running")))
    with pytest.raises(WaitTimeout, match=r"translation tr_1 is still running after 0 s"):
        drive(wait_translation(handle, timeout=0, poll_interval=1), [])
