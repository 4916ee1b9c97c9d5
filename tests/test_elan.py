"""ELAN and ELAN-light reproduce the official code's conformance vectors."""

import pytest
import torch

import litesr
from conftest import TOLERANCE, load_vector, relative_error

NAMES = ["elan_light_x2", "elan_light_x3", "elan_light_x4", "elan_x4_d4"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("arch", [None, "elan", "elan-light"])
def test_conformance(name, arch):
    state, tensors, meta = load_vector(name)
    model = litesr.load_model(state, arch=arch)
    args = meta["constructor_args"]
    assert model.scale == meta["scale"]
    assert (model.config["c_elan"], model.config["m_elan"], model.config["n_share"]) == (
        args["c_elan"], args["m_elan"], args["n_share"])
    with torch.inference_mode():
        for io in "abcd":
            x, ref = tensors[f"input_{io}"], tensors[f"output_{io}"]
            out = 255.0 * model(x / 255.0)  # official works in 0..255; ours in [0, 1]
            assert relative_error(out, ref) <= TOLERANCE, (name, io)


def test_parameter_count_matches_official():
    state, _, meta = load_vector("elan_light_x4")
    model = litesr.create_model("elan-light", 4)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == meta["param_count_trainable"]
    assert set(model.state_dict()) == set(state)


def test_wrong_shift_kernel_is_rejected():
    state, _, _ = load_vector("elan_light_x2")
    state = dict(state)
    key = "body.0.modules_lfe.lfe_0.conv0.shift_conv.weight"
    state[key] = torch.rand_like(state[key])
    with pytest.raises(Exception, match="shift kernel"):
        litesr.load_model(state)


@pytest.mark.parametrize("shape", [(2, 10, 5, 7), (1, 12, 1, 1), (1, 7, 3, 2)])
def test_shift_and_its_gradient_equal_the_official_depthwise_conv(shape):
    import torch.nn.functional as F

    from litesr.models.elan import one_hot_shift_kernel, shift_channel_groups

    x = torch.randn(*shape, dtype=torch.double, requires_grad=True)
    official = F.conv2d(x, one_hot_shift_kernel(shape[1]).double(), padding=1, groups=shape[1])
    ours = shift_channel_groups(x)
    assert torch.equal(ours, official)
    g = torch.randn_like(ours)
    assert torch.equal(torch.autograd.grad(ours, x, g)[0], torch.autograd.grad(official, x, g)[0])
