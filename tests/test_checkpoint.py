"""Checkpoints: loaded with weights_only, so a crafted file is refused before any of its code runs;
the RNG states survive the trip; checkpoints from before the change still load."""
import os
import random

import numpy as np
import pytest
import torch

from wsis.engine import checkpoint


class RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_checkpoint_is_refused_without_running_its_code(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "their.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "config": {}, "extra": RunsACommand(marker)}, path)
    with pytest.raises(ValueError, match=r"refusing checkpoint .*their\.pt.*(system|posix)"):
        checkpoint.load(path)
    assert not marker.exists()


def test_rng_states_round_trip(tmp_path):
    checkpoint.save({"rng": checkpoint.rng_state()}, tmp_path / "a.pt")
    before = torch.rand(3), np.random.rand(3), random.random()
    checkpoint.set_rng_state(checkpoint.load(tmp_path / "a.pt")["rng"])
    after = torch.rand(3), np.random.rand(3), random.random()
    assert torch.equal(before[0], after[0]) and np.array_equal(before[1], after[1]) and before[2] == after[2]


def test_a_checkpoint_from_before_loads_safely(tmp_path):
    """Earlier checkpoints held NumPy's state as an array: it loads, and restores the generators."""
    old = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    torch.save({"rng": old, "iteration": 3}, tmp_path / "old.pt")
    before = np.random.rand(3), random.random()
    state = checkpoint.load(tmp_path / "old.pt")
    checkpoint.set_rng_state(state["rng"])
    assert state["iteration"] == 3
    assert np.array_equal(np.random.rand(3), before[0]) and random.random() == before[1]


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        checkpoint.load(tmp_path / "x.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="not a dict"):
        checkpoint.load(tmp_path / "list.pt")


def test_predict_refuses_a_crafted_checkpoint(tmp_path, capsys):
    from PIL import Image

    from wsis import predict

    marker = tmp_path / "ran"
    torch.save({"model": {}, "config": {}, "extra": RunsACommand(marker)}, tmp_path / "their.pt")
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    with pytest.raises(SystemExit) as exit_:
        predict.main(["--checkpoint", str(tmp_path / "their.pt"), str(tmp_path / "a.png"), "--out", str(tmp_path / "out")])
    assert exit_.value.code == 1
    assert "refusing checkpoint" in capsys.readouterr().err
    assert not marker.exists()
