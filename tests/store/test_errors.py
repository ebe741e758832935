"""Failures as the user reads them: no server paths."""

from __future__ import annotations

from store.errors import MAX_CHARS, sentence, without_paths


def test_paths_become_their_last_component() -> None:
    text = "[Errno 2] No such file or directory: '/srv/ganforge/data/runs/run_1/checkpoints/000100.safetensors'"
    assert without_paths(text) == "[Errno 2] No such file or directory: '000100.safetensors'"
    assert without_paths("cannot write /var/lib/x/ (disk full)") == "cannot write … (disk full)"
    # What is not a server path stays: URLs, API routes of one component, ratios, relative names.
    kept = "see http://host:8000/runs/abc and /runs at 3/4 of runs/x.png"
    assert without_paths(kept) == kept


def test_a_sentence_names_the_type_except_for_our_own_value_errors() -> None:
    error = FileNotFoundError(2, "No such file or directory", "/tmp/gf/data/datasets/abc/images.npy")
    assert sentence(error, prefix="Training failed") == (
        "Training failed: FileNotFoundError: [Errno 2] No such file or directory: 'images.npy'"
    )
    assert sentence(ValueError("train.steps: at most 100")) == "train.steps: at most 100"
    assert len(sentence(RuntimeError("x" * 5000))) == MAX_CHARS
