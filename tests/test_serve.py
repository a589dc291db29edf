"""A real Triton server (nvidia-pytriton's tritonserver, the `serve` extra) on the Python-backend
models `codedresnext triton --python` writes: answers over HTTP and gRPC equal the in-process
runtime, concurrent clients, bad requests, and no process left behind.

Tolerance: the served model runs the same runtime code on the same ONNX Runtime, but Triton's
dynamic batcher may merge requests, and ORT's CPU kernels can round differently per batch size:
scores agree to rtol 1e-5 / atol 1e-5; decisions and cascade outcomes must be equal.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from test_runtime_graphs import MEAN, STD, make_export

from codedresnext.artifact import load_manifest, save_manifest
from codedresnext.deploy.serve import ServerError, TritonServer, find_server, free_port
from codedresnext.deploy.triton import parse_config
from codedresnext.deploy.triton_model import write_python_models
from codedresnext.runtime import EarlyExitClassifier, SubsetDetector

th = pytest.importorskip("tritonclient.http", reason="the [serve] extra (tritonclient) is not installed")
tg = pytest.importorskip("tritonclient.grpc", reason="the [serve] extra (tritonclient) is not installed")
from tritonclient.utils import InferenceServerException  # noqa: E402

DETECTORS = ["class_cat", "class_dog", "subset_cat_dog"]
SEGMENTS = ["segment0", "segment1", "segment2"]
MODELS = [f"{d}_py" for d in DETECTORS] + ["cascade_py", "cascade_bls_py"] + [f"{s}_py" for s in SEGMENTS]
RTOL = ATOL = 1e-5


def _normalise(frames: np.ndarray) -> np.ndarray:
    x = (frames.astype(np.float32) / 255 - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory, real_images):
    """The synthetic export, its exits calibrated at the median confidence so samples leave at each."""
    d = make_export(tmp_path_factory.mktemp("serve_export"))
    with EarlyExitClassifier.from_directory(d, threads=1) as casc:
        exits, _ = casc.run_all(_normalise(real_images.images))
    m = load_manifest(d)
    for name, scores in zip(["segment0", "segment1"], exits):
        m.graph(name).exit_threshold = float(np.median(scores.max(1)))
    save_manifest(d, m)
    return d


@pytest.fixture(scope="module")
def server(export_dir, tmp_path_factory):
    try:
        find_server().close()
    except ServerError as e:
        pytest.skip(str(e))
    repo = tmp_path_factory.mktemp("repo")
    batching = dict(max_batch_size=64, preferred_batch=(4, 16), queue_delay_us=2000)
    write_python_models(export_dir, repo, **batching)
    # the same cascade sending each segment to its own model by BLS (a TensorRT plan on a GPU Triton)
    write_python_models(
        export_dir, repo, graphs=SEGMENTS, segment_calls="python", cascade_model="cascade_bls_py", **batching
    )
    srv = TritonServer(repo, ready_timeout_s=90)
    home = list(srv.binary.cleanup)
    try:
        srv.start()
        pgid = srv.process.pid
        yield srv
    finally:
        srv.stop()
    assert _group_gone(pgid), "tritonserver or a backend stub outlived stop()"
    assert not any(p.exists() for p in [srv.log_path, *home])  # nothing left in /tmp


def _infer(client, mod, model: str, x: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    inp = mod.InferInput("images", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    r = client.infer(model, [inp])
    return {n: r.as_numpy(n) for n in names}


@pytest.fixture(scope="module")
def clients(server):
    h, g = th.InferenceServerClient(server.http_url), tg.InferenceServerClient(server.grpc_url)
    yield {"http": (h, th), "grpc": (g, tg)}
    h.close()
    g.close()


def test_python_model_configs(server):
    for name in [f"{d}_py" for d in DETECTORS] + ["cascade_py"]:
        cfg = parse_config((server.repository / name / "config.pbtxt").read_text())
        assert cfg["backend"] == "python" and cfg["max_batch_size"] == 64 and cfg["dynamic_batching"]
        assert cfg["input"] == [{"name": "images", "data_type": "TYPE_FP32", "dims": [3, 32, 32]}]
    sub = parse_config((server.repository / "subset_cat_dog_py" / "config.pbtxt").read_text())
    assert [o["dims"] for o in sub["output"]] == [[2], [2]]
    assert sorted(server.models) == sorted(MODELS)
    bls = (server.repository / "cascade_bls_py" / "config.pbtxt").read_text()
    spec = re.search(r'key: "segment_models"\s*value: \{ string_value: "([^"]+)" \}', bls).group(1)
    calls = dict(c.split("=") for c in spec.split(","))
    assert calls == {s: f"{s}_py" for s in SEGMENTS}


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_detectors_equal_in_process(server, clients, export_dir, real_images, protocol):
    client, mod = clients[protocol]
    x = _normalise(real_images.images[:16])
    for name in DETECTORS:
        with SubsetDetector(export_dir, name, threads=1) as det:
            ref, th_ = det.score(x), det.thresholds
        out = _infer(client, mod, f"{name}_py", x, ["score", "decision"])
        np.testing.assert_allclose(out["score"], ref, rtol=RTOL, atol=ATOL)
        clear = np.abs(ref - th_) > 1e-4  # decisions on the threshold itself may flip by rounding
        np.testing.assert_array_equal(out["decision"][clear], (ref > th_)[clear])
        assert out["decision"].dtype == bool and out["score"].shape == ref.shape


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("model", ["cascade_py", "cascade_bls_py"])
def test_cascade_equals_in_process(server, clients, export_dir, real_images, protocol, model):
    """Both cascades (segments run inside the model, or sent to the segment models by BLS) give
    the in-process cascade's predictions, exits and FLOPs exactly."""
    client, mod = clients[protocol]
    x = _normalise(real_images.images)
    with EarlyExitClassifier.from_directory(export_dir, threads=1) as casc:
        ref = casc.predict(x)
    assert len(set(ref.exit_index.tolist())) == 3  # samples leave at both exits and at the end
    out = _infer(client, mod, model, x, ["prediction", "exit_index", "flops"])
    np.testing.assert_array_equal(out["prediction"][:, 0], ref.predictions)
    np.testing.assert_array_equal(out["exit_index"][:, 0], ref.exit_index)
    np.testing.assert_allclose(out["flops"][:, 0], ref.flops)


def test_concurrent_clients_equal_sequential(server, real_images):
    """8 clients at once with batch sizes 1..8 (the batcher merges them) == one request at a time."""
    x = _normalise(real_images.images)
    jobs = [(i % 2 == 0, x[i * 3 : i * 3 + 1 + i]) for i in range(8)]

    def call(job):
        cascade, xb = job
        c = th.InferenceServerClient(server.http_url)
        try:
            if cascade:
                return _infer(c, th, "cascade_py", xb, ["prediction", "exit_index"])
            return _infer(c, th, "subset_cat_dog_py", xb, ["score", "decision"])
        finally:
            c.close()

    sequential = [call(j) for j in jobs]
    with ThreadPoolExecutor(8) as pool:
        concurrent = list(pool.map(call, jobs * 3))
    for i, got in enumerate(concurrent):
        want = sequential[i % 8]
        for k in want:
            if want[k].dtype == np.float32:
                np.testing.assert_allclose(got[k], want[k], rtol=RTOL, atol=ATOL)
            else:
                np.testing.assert_array_equal(got[k], want[k])


def test_bad_requests_get_errors_and_server_keeps_serving(server, clients, real_images):
    client, mod = clients["http"]
    x = _normalise(real_images.images[:2])
    bad = np.zeros((2, 3, 16, 16), np.float32)
    with pytest.raises(InferenceServerException, match="unexpected shape|shape"):
        _infer(client, mod, "class_cat_py", bad, ["score"])
    inp = mod.InferInput("images", list(x.shape), "FP64")
    inp.set_data_from_numpy(x.astype(np.float64))
    with pytest.raises(InferenceServerException, match="FP64|data-type|datatype"):
        client.infer("class_cat_py", [inp])
    nan = x.copy()
    nan[1, 0, 3, 3] = np.nan
    for model in ("class_cat_py", "cascade_py"):
        with pytest.raises(InferenceServerException, match="NaN or infinite"):
            _infer(client, mod, model, nan, ["prediction" if model == "cascade_py" else "score"])
    assert client.is_server_live() and client.is_model_ready("class_cat_py")
    out = _infer(client, mod, "class_cat_py", x, ["score"])
    assert out["score"].shape == (2, 1) and np.isfinite(out["score"]).all()


def test_serve_command_prints_endpoints_and_stops_on_sigterm(server):
    """The CLI: a second server on the same repository, stopped by SIGTERM, leaves no process."""
    http, grpc = free_port(), free_port()
    cmd = [sys.executable, "-m", "codedresnext.cli", "serve", str(server.repository)]
    cmd += ["--http-port", str(http), "--grpc-port", str(grpc)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = p.stdout.readline()
            lines.append(line)
            if not line or line.startswith("ready"):
                break
        text = "".join(lines)
        assert f"http://127.0.0.1:{http}" in text and f"127.0.0.1:{grpc}" in text, text
        assert th.InferenceServerClient(f"127.0.0.1:{http}").is_server_ready()
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0
        time.sleep(0.5)
        assert subprocess.run(["pgrep", "-f", f"http-port={http}"], capture_output=True).returncode == 1
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_serve_refuses_bad_options(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "codedresnext.cli", "serve", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "no such directory" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "codedresnext.cli",
            "serve",
            str(tmp_path),
            "--http-port",
            "9",
            "--grpc-port",
            "9",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "both 9" in r.stderr
