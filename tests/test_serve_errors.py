"""`codedresnext serve` where no server can run: a clear error naming what to install, exit 2,
and no temporary server folder left behind (runs without the [serve] extra)."""

from __future__ import annotations

import pytest

from codedresnext import cli
from codedresnext.deploy import serve
from codedresnext.deploy.serve import ServerError, TritonServer, find_server


def test_no_server_names_the_install(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(serve, "_pytriton_dir", lambda: None)
    monkeypatch.setenv("PATH", str(tmp_path))  # no tritonserver on PATH
    with pytest.raises(ServerError, match="nvidia-pytriton"):
        find_server()
    assert cli.main(["serve", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install --no-deps nvidia-pytriton" in err[0]


def test_other_platforms_are_refused(monkeypatch):
    monkeypatch.setattr(serve.sys, "platform", "darwin")
    with pytest.raises(ServerError, match="Linux x86_64 / aarch64"):
        find_server()


def test_a_repository_without_servable_models_leaves_nothing(monkeypatch, tmp_path):
    if serve._pytriton_dir() is None:
        pytest.skip("nvidia-pytriton is not installed (the [serve] extra's server)")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.pbtxt").write_text('name: "m"\nplatform: "onnxruntime_onnx"\n')
    made = []
    real = serve._wheel_server
    monkeypatch.setattr(serve, "_wheel_server", lambda dist: made.append(real(dist)) or made[-1])
    with pytest.raises(ServerError, match="no model .* this server can load"):
        TritonServer(tmp_path)
    assert made and not any(p.exists() for b in made for p in b.cleanup)
