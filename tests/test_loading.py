"""litesr.load_model: wrappers, strictness with messages that name the problem, detection, round trips."""

import pytest
import torch

import litesr
from litesr import CheckpointError
from conftest import load_vector, relative_error


@pytest.fixture(scope="module")
def elan_x2():
    return load_vector("elan_light_x2")


def test_wrapped_and_prefixed_checkpoints_load(elan_x2, tmp_path):
    state, tensors, _ = elan_x2
    x = tensors["input_b"] / 255.0
    with torch.inference_mode():
        ref = litesr.load_model(state)(x)
        for wrapped in ({"params_ema": state}, {"params": state},
                        {"state_dict": {f"module.{k}": v for k, v in state.items()}},
                        {"model": state}):
            assert torch.equal(litesr.load_model(wrapped)(x), ref)
        path = tmp_path / "legacy.pth"
        torch.save({"params": state}, path)
        assert torch.equal(litesr.load_model(path)(x), ref)


def test_safetensors_round_trip(elan_x2, tmp_path):
    state, tensors, _ = elan_x2
    model = litesr.load_model(state)
    path = litesr.save_model(model, tmp_path / "elan.safetensors")
    again = litesr.load_model(path)
    assert set(again.state_dict()) == set(state)
    with torch.inference_mode():
        x = tensors["input_a"]
        assert relative_error(again(x / 255) * 255, tensors["output_a"]) <= 2e-5


def test_missing_key_is_named(elan_x2):
    state = dict(elan_x2[0])
    del state["body.3.modules_gmsa.gmsa_0.project_out.bias"]
    with pytest.raises(CheckpointError, match=r"missing key\(s\): body\.3\.modules_gmsa\.gmsa_0\.project_out\.bias"):
        litesr.load_model(state)


def test_unexpected_key_is_named(elan_x2):
    state = dict(elan_x2[0])
    state["body.0.extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"unexpected key\(s\): body\.0\.extra\.weight"):
        litesr.load_model(state, arch="elan")


def test_wrong_shape_is_named(elan_x2):
    state = dict(elan_x2[0])
    state["body.1.modules_gmsa.gmsa_1.project_out.weight"] = torch.zeros(60, 60, 3, 3)
    with pytest.raises(CheckpointError, match=r"shape mismatch for body\.1\.modules_gmsa\.gmsa_1\.project_out\.weight"):
        litesr.load_model(state)


def test_scale_mismatch(elan_x2):
    with pytest.raises(CheckpointError, match="scale mismatch.*x2.*x4"):
        litesr.load_model(elan_x2[0], scale=4)


def test_wrong_arch_and_unknown_checkpoints(elan_x2):
    with pytest.raises(KeyError, match="unknown architecture 'nosuchnet'.*elan-light"):
        litesr.load_model(elan_x2[0], arch="nosuchnet")
    with pytest.raises(CheckpointError, match="unrecognised checkpoint.*Supported architectures: .*elan"):
        litesr.load_model({"conv.weight": torch.zeros(3, 3, 3, 3)})
    other = next((a for a in litesr.ARCHITECTURES if a != "elan"), None)
    if other:
        with pytest.raises(CheckpointError, match=f"not an? {other} checkpoint; it looks like an elan checkpoint"):
            litesr.load_model(elan_x2[0], arch=other)


def test_unsafe_or_broken_files_are_refused(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="cannot read .*bad.safetensors"):
        litesr.load_model(bad)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, evil)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        litesr.load_model(evil)
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        litesr.load_model(tmp_path / "absent.pth")


def test_create_model_variants():
    light = litesr.create_model("elan-light", 3)
    assert light.scale == 3 and light.config["c_elan"] == 60
    with pytest.raises(ValueError, match="supports scales"):
        litesr.create_model("elan-light", 5)


class _Pickled:  # an object a weights_only load refuses
    pass


def test_a_refused_pickle_never_suggests_weights_only_false(tmp_path, capsys):
    import pickle
    import warnings

    from litesr.cli import main

    paths = []
    for protocol in (2, 4):
        path = tmp_path / f"p{protocol}.pth"
        with open(path, "wb") as f:
            pickle.dump({"w": _Pickled()}, f, protocol=protocol)
        paths.append(path)
    paths.append(tmp_path / "zip.pth")
    torch.save({"w": _Pickled()}, paths[-1])
    for path in paths:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert main(["convert", str(path), str(tmp_path / "o.safetensors")]) == 2
        err = capsys.readouterr().err
        shown = err + "".join(str(w.message) for w in caught)
        assert "pickle protocol" not in shown and "weights_only=False" not in shown.replace(" ", "")
        assert "set to `False`" not in shown and "two options" not in shown, shown
        assert len(err.strip().splitlines()) == 1 and str(path) in err
