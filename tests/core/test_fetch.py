"""Downloads from a local HTTP server on 127.0.0.1 serving files of the real data dir."""

from __future__ import annotations

import hashlib
import http.server
import pathlib
import threading

import pytest

from robustml_jax import data as data_cli
from robustml_jax.core import datasets, fetch


class _Handler(http.server.SimpleHTTPRequestHandler):
    truncate: set[str] = set()

    def log_message(self, *args):
        pass

    def do_GET(self):
        rel = self.path.lstrip("/")
        if rel in self.truncate:  # promise more bytes than sent, then hang up
            body = (pathlib.Path(self.directory) / rel).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def server():
    present, looked = datasets.status("openclip_results")
    if not present:
        pytest.skip(f"data dir absent (looked in {looked})")
    src = datasets.locate("openclip_results")
    handler = lambda *a, **k: _Handler(*a, directory=str(src), **k)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", src
    httpd.shutdown()
    _Handler.truncate = set()


def _leftovers(folder: pathlib.Path):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_fetch_checksum_match(server, tmp_path):
    url, src = server
    got = fetch.fetch("openclip_results", data_dir=tmp_path, base_url=url, log=lambda s: None)
    rel = "effrob/openclip_results.csv"
    assert got == [tmp_path / rel]
    assert (tmp_path / rel).read_bytes() == (src / rel).read_bytes()
    assert not _leftovers(tmp_path / "effrob")
    # Present now: a second fetch downloads nothing (server not needed).
    assert fetch.fetch("openclip_results", data_dir=tmp_path, log=lambda s: None) == got


def test_fetch_checksum_mismatch_leaves_nothing(server, tmp_path):
    url, src = server
    rel = "effrob/openclip_results.csv"
    with pytest.raises(fetch.ChecksumError, match="SHA-256 mismatch"):
        fetch.download_file(f"{url}/{rel}", tmp_path / rel, "0" * 64)
    assert not (tmp_path / rel).exists() and not _leftovers(tmp_path / "effrob")


def test_interrupted_download_leaves_nothing(server, tmp_path):
    url, src = server
    rel = "effrob/openclip_results.csv"
    _Handler.truncate = {rel}
    sha = hashlib.sha256((src / rel).read_bytes()).hexdigest()
    with pytest.raises(fetch.DownloadError):
        fetch.download_file(f"{url}/{rel}", tmp_path / rel, sha)
    assert not (tmp_path / rel).exists() and not _leftovers(tmp_path / "effrob")


def test_stale_temp_files_are_cleaned(server, tmp_path):
    url, _ = server
    (tmp_path / "effrob").mkdir()
    stale = tmp_path / "effrob" / ".fetch-openclip_results.csv.abc"
    stale.write_bytes(b"half")
    fetch.fetch("openclip_results", data_dir=tmp_path, base_url=url, log=lambda s: None)
    assert not stale.exists()


def test_cli_list_and_fetch(server, tmp_path, capsys, monkeypatch):
    url, _ = server
    assert data_cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "openclip_results" in out and "looked in" in out
    assert (
        data_cli.main(["fetch", "openclip_results", f"--data-dir={tmp_path}", f"--base-url={url}"])
        == 0
    )
    assert (tmp_path / "effrob" / "openclip_results.csv").exists()
    assert data_cli.main(["fetch", "nope", f"--data-dir={tmp_path}"]) == 1
    assert "unknown dataset 'nope'" in capsys.readouterr().err
    assert data_cli.main(["fetch", "mr", f"--data-dir={tmp_path}"]) == 1  # no remote registered


def test_unpack_tar_atomic(tmp_path):
    import tarfile

    payload = tmp_path / "f.txt"
    payload.write_text("hi")
    with tarfile.open(tmp_path / "a.tar.gz", "w:gz") as tf:
        tf.add(payload, arcname="inner/f.txt")
    out = fetch.unpack_tar(tmp_path / "a.tar.gz", tmp_path / "unpacked")
    assert (out / "inner" / "f.txt").read_text() == "hi"
    with pytest.raises(FileExistsError):
        fetch.unpack_tar(tmp_path / "a.tar.gz", tmp_path / "unpacked")
    assert not _leftovers(tmp_path)
