"""Fixtures for the model, trainer and evaluation tests: a tiny synthetic data set with proposals."""
import pytest

from wsis import config as config_lib


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    pytest.importorskip("cv2", reason="opencv-contrib-python-headless is not installed")
    from wsis.data import proposals
    from wsis.data.synthetic import Settings, generate

    root = generate(tmp_path_factory.mktemp("tiny") / "data", Settings(num_train=6, num_val=3, min_image=96,
                    max_image=128, min_object=32, max_object=64, max_instances=2), progress=False)  # fmt: skip
    for split in ("train", "val"):
        proposals.compute(root, split, jobs=1, progress=False)
    return root


def tiny_config(root, out, *overrides):
    """A config small enough to train for a few iterations in seconds."""
    return config_lib.load(None, [
        f"data.root={root}", f"output_dir={out}", "data.scales=[96,112]", "data.max_boxes=40", "data.workers=0",
        "model.backbone.weights=none", "model.img_dim=16", "model.seg_dim=16", "model.regressor_dim=16",
        "solver.max_iter=4", "solver.checkpoint_period=2", "solver.log_period=1", "solver.warmup_iters=0",
        "test.scales=[112]", "test.flip=false", "test.max_detections=10", *overrides])  # fmt: skip
