"""Stopping `litesr upscale` from outside: Ctrl-C, SIGTERM and SIGHUP leave no temporary file and say how to
resume; a later run removes what a SIGKILL left; output names up to the file system's limit are writable."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import litesr
from litesr.cli import main

#: `litesr upscale` with a stand-in slow model: the first image is computed at once, every later one waits a
#: minute inside its output's atomic write (its temporary file exists), so a signal always lands mid-write.
# The child takes Python's own Ctrl-C handler: a job started in the background by a non-interactive shell (as a CI
# runner may start the suite) hands its children SIGINT ignored, and a user's terminal never does.
SLOW_UPSCALE = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
import litesr.api as api
real, calls = api.upscale_strips, []
def slow(*args, **kwargs):
    calls.append(1)
    for strip in real(*args, **kwargs):
        if len(calls) > 1:
            time.sleep(60)
        yield strip
api.upscale_strips = slow
from litesr.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "pan_x2.safetensors"
    litesr.save_model(litesr.create_model("pan", 2).eval(), path)
    return path


def images(folder: Path, n: int = 3) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    return folder


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp"))


def start_and_signal(tiny, src, out, signum):
    """Run the slow upscale on ``src``; once the first output exists and the second is being written, signal it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", SLOW_UPSCALE, "upscale", str(src), "-o", str(out), "--weights",
                             str(tiny), "--precision", "fp32", "--device", "cpu", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if out.is_dir() and (out / "p0_x2.png").exists() and any(p.suffix == ".tmp" for p in out.iterdir()):
            break
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()
    assert temporaries(out), "the second image is not being written"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, [line for line in err.splitlines() if line.strip()]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_stop_signal_leaves_no_temporary_and_says_how_to_resume(tiny, tmp_path, signum):
    src, out = images(tmp_path / "in"), tmp_path / "out"
    rc, err = start_and_signal(tiny, src, out, signum)
    name = signal.Signals(signum).name
    assert rc == 128 + signum, err
    assert len(err) == 1 and f"stopped by {name} after 1 of 3 image(s)" in err[0] and "--skip-existing" in err[0], err
    assert temporaries(out) == [] and sorted(p.name for p in out.iterdir()) == ["p0_x2.png"]


def test_a_later_run_removes_the_temporaries_a_killed_run_left(tiny, tmp_path, capsys):
    src, out = images(tmp_path / "in"), tmp_path / "out"
    rc, _ = start_and_signal(tiny, src, out, signal.SIGKILL)
    assert rc == -signal.SIGKILL
    left = temporaries(out)
    assert len(left) == 1 and left[0].startswith(".litesr-")  # the premise: SIGKILL cannot clean up
    old = time.time() - 60
    earlier = out / ".p1_x2.png.k3j2n5kc.tmp"  # the name an earlier litesr gave the temporary of p1_x2.png
    alive = out / f".litesr-{os.getpid()}-abcdefgh.tmp"  # a running litesr's: not to be touched
    foreign = out / ".notes.tmp"  # not litesr's
    for path in (earlier, alive, foreign):
        path.write_bytes(b"x")
        os.utime(path, (old, old))
    rc = main(["upscale", str(src), "-o", str(out), "--weights", str(tiny), "--skip-existing", "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 0 and "removed 2 temporary file(s) an interrupted run left in" in err, err
    assert temporaries(out) == sorted([alive.name, foreign.name])
    assert sorted(p.name for p in out.glob("*.png")) == ["p0_x2.png", "p1_x2.png", "p2_x2.png"]


def test_output_names_up_to_the_file_system_limit_are_written(tiny, tmp_path, capsys):
    src = images(tmp_path / "in", 1) / "p0.png"
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    longest = tmp_path / ("a" * (limit - 4) + ".png")  # the temporary must not need more room than the output
    assert main(["upscale", str(src), "-o", str(longest), "--weights", str(tiny), "--quiet", "--device", "cpu"]) == 0
    assert longest.is_file() and temporaries(tmp_path) == []


def test_a_name_the_file_system_cannot_take_is_refused_before_computing(tiny, tmp_path, capsys, monkeypatch):
    src = images(tmp_path / "in")
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    monkeypatch.setattr("litesr.api.upscale_strips", lambda *a, **k: pytest.fail("computed first"))
    out = tmp_path / "out"
    rc = main(["upscale", str(src), "-o", str(out), "--weights", str(tiny), "--suffix", "_" + "x" * (limit - 6),
               "--device", "cpu"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(err) == 1 and "p0_" in err[0] and f"longer than the {limit}" in err[0], err
    assert not out.exists() or list(out.iterdir()) == []


def test_a_closed_pipe_ends_a_listing_quietly():
    """`litesr models | head -1`: the reader leaves early; no traceback, the status of a SIGPIPE."""
    proc = subprocess.run(f"{sys.executable} -m litesr models | head -1", shell=True, capture_output=True, text=True,
                          executable="/bin/bash")
    assert proc.stdout.startswith("weights") and "Traceback" not in proc.stderr, proc.stderr
