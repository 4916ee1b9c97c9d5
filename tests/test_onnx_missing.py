"""Without the optional extra, ONNX commands fail with one line naming it (this test needs no onnx install)."""

import sys


def test_onnx_weights_without_onnxruntime_name_the_extra(monkeypatch, tmp_path, capsys):
    from litesr.cli import main

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    monkeypatch.setitem(sys.modules, "onnx", None)
    graph = tmp_path / "model.onnx"
    graph.write_bytes(b"not read")
    image = tmp_path / "in.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(image)
    assert main(["upscale", str(image), "-o", str(tmp_path / "out.png"), "--weights", str(graph)]) == 2
    assert main(["export", "-o", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count('pip install "litesr[onnx]"') == 2 and not (tmp_path / "out.png").exists()
