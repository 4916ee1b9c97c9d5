"""litesr's table of named weights: the table itself, the pinned hashes against the files in ../shared, names in
every command, and downloads from a local HTTP server (never the internet)."""

from __future__ import annotations

import csv
import dataclasses
import http.server
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import litesr
from litesr import zoo
from litesr.cli import main
from litesr.errors import DownloadError, UnknownNameError
from conftest import DATA, WEIGHTS

REPO = Path(__file__).resolve().parents[1]
MANIFEST = DATA / "MANIFEST.tsv"


@pytest.fixture(autouse=True)
def _own_cache(monkeypatch, tmp_path):
    """Each test downloads into a cache of its own, with no folder of weights unless it sets one."""
    monkeypatch.setenv("LITESR_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LITESR_WEIGHTS_DIR", raising=False)


# --------------------------------------------------------------------------------------------- the table


def test_the_names_of_the_issue_exist_and_mean_what_they_say():
    assert zoo.find("elan-light-x4").name == "elan-light-x4-frl"  # the default x4
    assert zoo.find("elan-light-x4-291").file == "elan-light_x4.safetensors"  # litesr's own, by name
    assert zoo.find("swinir-light-x2-official").url.endswith("SwinIR-S_x2.pth")
    assert zoo.find("elan-light", 2).name == "elan-light-x2-491"
    assert zoo.find("ELAN-light_x4").name == "elan-light-x4-frl"
    assert zoo.find("esrt-x3") is None  # the third-party ESRT x3 is no default: only by its full name
    assert zoo.find("nonsense") is None and not zoo.is_weights_name("elan-light")


def test_every_entry_is_complete():
    table = zoo.entries()
    assert len(table) >= 17
    for e in table.values():
        assert e.name == f"{e.arch}-x{e.scale}-{e.origin}" and e.origin
        assert e.licence and e.attribution and e.data
        assert e.shipped or e.url.startswith("https://"), e.name
        assert set(e.scores) <= {"Set5", "Set14", "B100", "Urban100"}
    swinir = [e for e in table.values() if e.name.startswith("swinir-light-") and e.origin == "official"]
    assert {e.scale for e in swinir} == {2, 3, 4} and all(not e.scores and e.size is None for e in swinir)


def _write(tmp_path, text):
    path = tmp_path / "zoo.yaml"
    path.write_text(text)
    return path


ROW = """- name: {name}
  arch: pan
  scale: 4
  default: {default}
  url: http://127.0.0.1:1/{name}.pth
  sha256: "{sha}"
  licence: x
  attribution: x
  data: x
"""


def test_a_broken_table_is_refused(tmp_path):
    ok = "0" * 64
    assert set(zoo.read_table(_write(tmp_path, ROW.format(name="pan-x4-a", default="true", sha=ok)))) == {"pan-x4-a"}
    two_defaults = ROW.format(name="pan-x4-a", default="true", sha=ok) + ROW.format(name="pan-x4-b", default="true",
                                                                                      sha=ok)
    for text, words in [(two_defaults, "more than one default"),
                        (ROW.format(name="pan-4-a", default="false", sha=ok), "the name must be"),
                        (ROW.format(name="pan-x4-a", default="false", sha="abc"), "sha256"),
                        (ROW.format(name="pan-x4-a", default="false", sha=ok).replace("url:", "file: f\n  url:"),
                         "one of them")]:
        with pytest.raises(ValueError, match=words):
            zoo.read_table(_write(tmp_path, text))


def _manifest() -> dict[str, dict]:
    if not MANIFEST.is_file():
        pytest.skip(f"{MANIFEST} not available")
    with open(MANIFEST, newline="") as f:
        return {row["local_path"]: row for row in csv.DictReader(f, delimiter="\t")}


def test_every_entry_whose_file_is_in_shared_has_the_pinned_hash():
    """The table pins what ../shared/data/MANIFEST.tsv records (repository, commit, path, sha256, size) and what
    the files there really hash to: IMDN, PAN, the third-party ESRT x3, the original of the FRL ELAN-light x4 and
    the NTIRE HiT-SRF and SPAN checkpoints."""
    rows = {(r["source_repo"], r["commit"], r["path_in_repo"]): (path, r) for path, r in _manifest().items()}
    checked = []
    for e in zoo.entries().values():
        pinned = e if e.url else None
        item = {"url": e.url, "sha256": e.sha256, "size": e.size} if e.url else dict(e.source)
        if not item.get("url", "").startswith("https://raw.githubusercontent.com/"):
            continue
        repo_commit_path = item["url"].removeprefix("https://raw.githubusercontent.com/").split("/", 3)
        key = ("/".join(repo_commit_path[:2]), repo_commit_path[2], repo_commit_path[3])
        assert key in rows, (e.name, key)
        local, row = rows[key]
        assert (item["sha256"], item["size"]) == (row["sha256"], int(row["bytes"])), e.name
        path = DATA / local
        assert zoo.sha256_of(path) == item["sha256"] and path.stat().st_size == item["size"], e.name
        checked.append(e.name if pinned else e.name + " (source)")
    assert len(checked) == 10, checked  # IMDN x3, PAN x3, ESRT x3, FRL's original, HiT-SRF, SPAN


def test_shipped_frl_file_holds_the_original_tensors():
    original = WEIGHTS / "ELAN-light-FRL" / "ELAN-light_LSR_x4_unofficial.pth"
    if not original.is_file():
        pytest.skip(f"{original} not available")
    a = litesr.load_model(original).state_dict()
    b = litesr.load_model("elan-light-x4-frl").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------------------------- a local server


class _Handler(http.server.BaseHTTPRequestHandler):
    root: Path = WEIGHTS
    requests: list[str] = []
    mode = "whole"  # "whole", "truncated" (promise everything, send half) or "slow"

    def do_GET(self):  # noqa: N802 (the http.server name)
        type(self).requests.append(self.path)
        path = self.root / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.mode == "truncated":
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        step = 1 << 16
        for i in range(0, len(data), step):
            self.wfile.write(data[i:i + step])
            if self.mode == "slow":
                time.sleep(0.1)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """An HTTP server on 127.0.0.1 serving ../shared/data/weights; ``.requests`` lists the paths asked for."""
    if not (WEIGHTS / "PAN" / "PANx4_DF2K.pth").is_file():
        pytest.skip("../shared/data/weights not available")
    handler = type("Handler", (_Handler,), {"requests": [], "mode": "whole"})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.handler = handler
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _dead_url() -> str:
    import socket

    with socket.socket() as s:  # a port nothing listens on once this closes
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/PAN/PANx4_DF2K.pth"


@pytest.fixture
def local_table(monkeypatch):
    """The package's table with PAN x4 and SwinIR-light x2 downloaded from ``url`` (set by the test)."""
    table = dict(zoo.entries())

    def point(name: str, url: str, **changes) -> zoo.Weights:
        table[name] = dataclasses.replace(table[name], url=url, **changes)
        monkeypatch.setattr(zoo, "entries", lambda: table)
        return table[name]

    return point


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != ".locks") if folder.exists() else []


def test_download_then_cache_hit(server, local_table):
    entry = local_table("pan-x4-official", f"{server.base}/PAN/PANx4_DF2K.pth")
    model = litesr.load_model("pan-x4")  # the default PAN x4, fetched into the cache on first use
    assert model.scale == 4 and server.handler.requests == ["/PAN/PANx4_DF2K.pth"]
    cached = zoo.cache_folder() / "PANx4_DF2K.pth"
    assert zoo.sha256_of(cached) == entry.sha256 and _leftovers(zoo.cache_folder()) == ["PANx4_DF2K.pth"]
    assert zoo.status(entry) == "cached"
    litesr.load_model("pan-x4-official")
    assert server.handler.requests == ["/PAN/PANx4_DF2K.pth"]  # no second request


def test_wrong_hash_is_refused_and_nothing_kept(server, local_table, tmp_path):
    local_table("pan-x4-official", f"{server.base}/PAN/PANx4_DF2K.pth", sha256="1" * 64)
    with pytest.raises(DownloadError, match="not the pinned 1111.*refused, nothing was kept") as err:
        zoo.fetch(zoo.find("pan-x4-official"), "off", folder=tmp_path / "w")
    assert "\n" not in str(err.value) and _leftovers(tmp_path / "w") == []


def test_truncated_transfer_is_refused_and_nothing_kept(server, local_table, tmp_path):
    server.handler.mode = "truncated"
    local_table("pan-x4-official", f"{server.base}/PAN/PANx4_DF2K.pth", size=None)  # only Content-Length tells
    with pytest.raises(DownloadError, match="(stopped|broke off) after") as err:
        zoo.fetch(zoo.find("pan-x4-official"), "off", folder=tmp_path / "w")
    assert "\n" not in str(err.value) and _leftovers(tmp_path / "w") == []


def test_server_down_says_url_hash_and_where_to_put_the_file(local_table, tmp_path, monkeypatch):
    url = _dead_url()
    entry = local_table("pan-x4-official", url)
    with pytest.raises(DownloadError) as err:
        zoo.fetch(entry, "off", folder=tmp_path / "w")
    message = str(err.value)
    assert url in message and entry.sha256 in message and "LITESR_WEIGHTS_DIR" in message and "\n" not in message
    assert _leftovers(tmp_path / "w") == []


def test_offline_message_from_the_command_line_then_the_local_folder(local_table, tmp_path, monkeypatch, capsys):
    """The issue's case: `litesr upscale photo.png --weights swinir-light-x2-official` offline prints one line with
    the URL, the sha256 and the folder; with the file in $LITESR_WEIGHTS_DIR it runs (a stand-in file here, since
    the real one cannot be had: IMDN x2 in SwinIR's place, pinned by its own hash)."""
    url = _dead_url().replace("PAN/PANx4_DF2K.pth", "imdn_x2_standin.pth")
    imdn = WEIGHTS / "IMDN" / "IMDN_x2.pth"
    if not imdn.is_file():
        pytest.skip(f"{imdn} not available")
    entry = local_table("swinir-light-x2-official", url, arch="imdn", sha256=zoo.sha256_of(imdn))
    sample = REPO / "examples" / "sample.png"
    out = tmp_path / "x2.png"
    assert main(["upscale", str(sample), "-o", str(out), "--weights", "swinir-light-x2-official", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and url in err and entry.sha256 in err and "$LITESR_WEIGHTS_DIR" in err
    assert not out.exists()
    folder = tmp_path / "offline"
    folder.mkdir()
    (folder / "imdn_x2_standin.pth").write_bytes(imdn.read_bytes())
    monkeypatch.setenv("LITESR_WEIGHTS_DIR", str(folder))
    assert main(["upscale", str(sample), "-o", str(out), "--weights", "swinir-light-x2-official", "--quiet"]) == 0
    assert out.is_file()
    (folder / "imdn_x2_standin.pth").write_bytes(imdn.read_bytes()[:-1])  # a damaged copy is refused, not used
    assert main(["upscale", str(sample), "-o", str(out), "--weights", "swinir-light-x2-official", "--quiet"]) == 2
    assert "has sha256" in capsys.readouterr().err


def test_local_folder_is_looked_in_before_the_network(server, local_table, tmp_path, monkeypatch):
    entry = local_table("pan-x4-official", f"{server.base}/PAN/PANx4_DF2K.pth")
    monkeypatch.setenv("LITESR_WEIGHTS_DIR", str(WEIGHTS / "PAN"))
    assert zoo.fetch(entry, "off") == WEIGHTS / "PAN" / "PANx4_DF2K.pth"
    assert zoo.status(entry) == "local" and server.handler.requests == []


CHILD = """
import dataclasses, sys
from litesr import zoo
entry = dataclasses.replace(zoo.entries()["pan-x4-official"], url=sys.argv[1])
print(zoo.fetch(entry, "off", folder=sys.argv[2]))
"""


def test_two_processes_download_once(server, local_table, tmp_path):
    """A second process waits for the first (a file lock), then takes its file: one request, one file."""
    server.handler.mode = "slow"  # about 1.7 s of transfer, so the two overlap
    url, folder = f"{server.base}/PAN/PANx4_DF2K.pth", tmp_path / "w"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, url, str(folder)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert {o.strip() for o, _ in outs} == {str(folder / "PANx4_DF2K.pth")}
    assert server.handler.requests == ["/PAN/PANx4_DF2K.pth"] and _leftovers(folder) == ["PANx4_DF2K.pth"]


def test_a_second_fetch_waits_for_the_lock_then_takes_the_file(server, local_table, tmp_path):
    """While another holder has the file's lock, a fetch neither asks the server nor writes; once the holder has
    put the file in place and let go, the fetch returns it without a request."""
    entry = local_table("pan-x4-official", f"{server.base}/PAN/PANx4_DF2K.pth")
    folder = tmp_path / "w"
    result = []
    with zoo._file_lock(folder / ".locks" / f"{entry.filename}.lock"):
        worker = threading.Thread(target=lambda: result.append(zoo.fetch(entry, "off", folder=folder)))
        worker.start()
        worker.join(timeout=1.0)
        assert worker.is_alive() and server.handler.requests == [] and result == []  # waiting
        (folder / entry.filename).write_bytes((WEIGHTS / "PAN" / "PANx4_DF2K.pth").read_bytes())
    worker.join(timeout=30)
    assert result == [folder / entry.filename] and server.handler.requests == []


def test_progress_lines_in_a_log(server, local_table, tmp_path, capsys):
    local_table("pan-x4-official", f"{server.base}/PAN/PANx4_DF2K.pth")
    assert main(["weights", "download", "pan-x4-official", "--to", str(tmp_path / "w")]) == 0
    captured = capsys.readouterr()
    assert "downloading pan-x4-official: 1.1 of 1.1 MiB (100%)" in captured.err
    assert str(tmp_path / "w" / "PANx4_DF2K.pth") in captured.out


# --------------------------------------------------------------------------------------------- names everywhere


def test_unknown_name_is_one_line_listing_the_names(tmp_path, capsys):
    out = tmp_path / "x.png"
    assert main(["upscale", str(REPO / "examples" / "sample.png"), "-o", str(out), "--weights", "elan-light-x9"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "elan-light-x4-291" in err and "swinir-light-x2-official" in err
    with pytest.raises(UnknownNameError):
        litesr.load_model("no-such-weights")
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        litesr.load_model("missing.pth")


def test_names_in_load_model_upscale_convert_and_init(tmp_path):
    import numpy as np

    model = litesr.load_model("elan-light-x4-291")
    assert model.scale == 4 and litesr.load_model("elan-light", scale=3).scale == 3
    image = np.zeros((8, 8, 3), np.uint8)
    assert litesr.upscale(image, model="elan-light-x2").shape == (16, 16, 3)
    assert main(["convert", "elan-light-x4-291", str(tmp_path / "own.safetensors")]) == 0
    a, b = model.state_dict(), litesr.load_model(tmp_path / "own.safetensors").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    from litesr.checkpoint import create_model
    from litesr.train import init_from

    fresh = create_model("elan-light", 2)
    skipped = init_from(fresh, "elan-light-x4")  # the FRL body into a x2 model
    frl = litesr.load_model("elan-light-x4-frl").state_dict()
    assert skipped and all(torch.equal(fresh.state_dict()[k], frl[k]) for k in frl if k not in skipped)


def test_bench_takes_a_name(capsys):
    assert main(["bench", "--macs-only", "elan-light-x4-291"]) == 0
    assert "elan-light-x4-291" in capsys.readouterr().out


def test_models_lists_entries_and_architectures(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("LITESR_WEIGHTS_DIR", str(tmp_path))
    (tmp_path / "PANx2_DF2K.pth").write_bytes(b"x")  # where a file is found, not whether it is right
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split() for line in lines if line.strip()}
    for e in zoo.entries().values():
        row = rows[e.name]
        assert (row[1] == "*") == e.default
        where = row[4] if e.default else row[3]
        assert where == ("shipped" if e.shipped else "local" if e.name == "pan-x2-official" else "download"), e.name
    assert rows["elan-light-x4-frl"][5:8] == ["32.44", "28.79", "27.70"]
    assert rows["swinir-light-x2-official"][5:9] == ["-", "-", "-", "-"]
    assert rows["elan-light"][2] == "x2,x3,x4" and rows["grformer"][2] == "x2,x4"


def test_markdown_table_is_generated_from_the_table(capsys):
    from litesr.cli.models import markdown_rows

    rows = markdown_rows()
    assert len(rows) == 2 + len(zoo.entries())
    frl = next(r for r in rows if r.startswith("| `elan-light-x4-frl`"))
    assert frl == ("| `elan-light-x4-frl` (default, `elan-light-x4`) | 601K | 53.5G | 32.44 | 28.79 | 27.70 | shipped "
                   "| MIT |")
    assert main(["models", "--markdown"]) == 0
    assert capsys.readouterr().out.splitlines() == rows


def test_readme_shows_the_generated_table():
    """README's model table is `litesr models --markdown`, pasted (scripts/ship_weights.py --readme rewrites it)."""
    from litesr.cli.models import markdown_rows

    lines = (REPO / "README.md").read_text().splitlines()
    rows = markdown_rows()
    assert rows[0] in lines, "README has no generated table of weights: paste `litesr models --markdown` into it"
    start = lines.index(rows[0])
    assert lines[start:start + len(rows)] == rows, "README's table of weights is stale: `litesr models --markdown`"


def test_docs_describe_every_entry_with_its_scores():
    text = (REPO / "docs" / "models.md").read_text()
    for e in zoo.entries().values():
        row = next((line for line in text.splitlines() if line.startswith(f"| `{e.name}`")), None)
        assert row is not None, f"docs/models.md has no row for {e.name}"
        for s in ("Set5", "Set14", "B100", "Urban100"):
            missing = "not measured yet" if e.scores else "not measured here"
            want = f"{e.scores[s]['psnr']:.2f} / {e.scores[s]['ssim']:.4f}" if s in e.scores else missing
            assert want in row, (e.name, s)
        assert f"### `{e.name}`" in text and e.sha256 in text
