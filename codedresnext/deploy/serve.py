"""Run a real Triton Inference Server on a model repository, on 127.0.0.1, as its own process group.

The server binary comes from the `serve` extra's nvidia-pytriton wheel (pytriton/tritonserver: the
tritonserver binary, the Python backend, one backend stub per Python version, its libraries in
nvidia_pytriton.libs) or is a `tritonserver` on PATH (an NGC container, with its own backends).
The wheel's Python backend needs the stub of this interpreter's version inside its backend
folder, so a private server home is made with links to the wheel's files and that stub. Models
are loaded explicitly: those whose backend the server has (the wheel: Python only), the others
are reported as skipped. Stopping kills the whole process group (the backend stubs too).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CodedResNeXtError

SERVE_EXTRA = (
    "pip install 'codedresnext[serve]' && pip install --no-deps nvidia-pytriton==0.7.0 "
    "(or put an NGC tritonserver on PATH)"
)
PLATFORM_BACKENDS = {"onnxruntime_onnx": "onnxruntime", "tensorrt_plan": "tensorrt"}


class ServerError(CodedResNeXtError):
    """The Triton server is missing, cannot run here, or did not become ready."""


@dataclass
class ServerBinary:
    """A tritonserver executable, its backend folder and the library folder it needs (if any)."""

    executable: Path
    backends: Path | None  # None: the binary's own default (/opt/tritonserver/backends)
    libs: Path | None = None
    cleanup: list[Path] = field(default_factory=list)

    def close(self) -> None:
        """Remove the private backend folder made for this binary (the wheel's server)."""
        for d in self.cleanup:
            shutil.rmtree(d, ignore_errors=True)
        self.cleanup = []


def _pytriton_dir() -> Path | None:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def find_server() -> ServerBinary:
    """The wheel's server (with a private backend folder holding this Python's stub), else PATH's."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "aarch64"):
        raise ServerError(
            f"the Triton server runs on Linux x86_64 / aarch64, not {sys.platform} {platform.machine()}; "
            "serve from a Linux machine or an NGC tritonserver container"
        )
    root = _pytriton_dir()
    if root is not None and (root / "tritonserver" / "bin" / "tritonserver").is_file():
        return _wheel_server(root / "tritonserver")
    found = shutil.which("tritonserver")
    if found:
        return ServerBinary(Path(found), None)
    raise ServerError(
        f"no Triton server found (nvidia-pytriton not installed, no tritonserver on PATH): {SERVE_EXTRA}"
    )


def _wheel_server(dist: Path) -> ServerBinary:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        have = sorted(p.name for p in (dist / "python_backend_stubs").iterdir())
        raise ServerError(
            f"nvidia-pytriton has no Python backend stub for Python {version} (it has {have}); "
            "serve from one of those Python versions"
        )
    home = Path(tempfile.mkdtemp(prefix="codedresnext-triton-"))
    py = home / "backends" / "python"
    py.mkdir(parents=True)
    for f in (dist / "backends" / "python").iterdir():
        (py / f.name).symlink_to(f)
    shutil.copy2(stub, py / "triton_python_backend_stub")
    return ServerBinary(
        dist / "bin" / "tritonserver", home / "backends", dist.parent.parent / "nvidia_pytriton.libs", [home]
    )


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def model_backend(config_text: str) -> str | None:
    """The backend a config.pbtxt needs: its `backend`, else its platform's backend."""
    m = re.search(r'^backend:\s*"([^"]+)"', config_text, re.M)
    if m:
        return m.group(1)
    m = re.search(r'^platform:\s*"([^"]+)"', config_text, re.M)
    return PLATFORM_BACKENDS.get(m.group(1), m.group(1)) if m else None


def loadable_models(repository: Path, backends: Path | None) -> tuple[list[str], dict[str, str]]:
    """(models this server can load, {skipped model: why}); without a backend folder, all."""
    load, skipped = [], {}
    for cfg in sorted(repository.glob("*/config.pbtxt")):
        backend = model_backend(cfg.read_text())
        if backends is None or (backend and (backends / backend).is_dir()):
            load.append(cfg.parent.name)
        else:
            skipped[cfg.parent.name] = f"this server has no {backend!r} backend"
    return load, skipped


def server_env(binary: ServerBinary) -> dict[str, str]:
    """The server's environment: its libraries, and a Python path where the stubs find numpy,
    onnxruntime and this codedresnext (the torch-free runtime the models import)."""
    env = dict(os.environ)
    if binary.libs is not None:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(binary.libs), env.get("LD_LIBRARY_PATH")]))
    package_root = str(Path(__file__).resolve().parents[2])
    paths = [package_root, sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(filter(None, [*paths, env.get("PYTHONPATH")])))
    # the wheel's stub takes its Python from PATH (as PyTriton runs it): this interpreter's
    env["PATH"] = os.pathsep.join(filter(None, [str(Path(sys.executable).parent), env.get("PATH")]))
    return env


class TritonServer:
    """`with TritonServer(repo) as srv:` starts tritonserver, waits until every loaded model is
    ready, and always stops its process group on exit. srv.http_url / srv.grpc_url are the endpoints."""

    def __init__(
        self,
        repository: str | os.PathLike,
        *,
        http_port: int | None = None,
        grpc_port: int | None = None,
        models: list[str] | None = None,
        ready_timeout_s: float = 60.0,
        binary: ServerBinary | None = None,
    ) -> None:
        self.repository = Path(repository).resolve()
        if not self.repository.is_dir():
            raise ServerError(
                f"model repository {self.repository} does not exist; write it with `codedresnext triton`"
            )
        self.binary = binary or find_server()
        self.http_port = http_port or free_port()
        self.grpc_port = grpc_port or free_port()
        self.ready_timeout_s = ready_timeout_s
        found, self.skipped = loadable_models(self.repository, self.binary.backends)
        self.models = [m for m in found if models is None or m in models]
        if not self.models:
            self.binary.close()
            raise ServerError(
                f"no model in {self.repository} that this server can load (skipped: {self.skipped}); "
                "write Python-backend models with `codedresnext triton --python`"
            )
        self.process: subprocess.Popen | None = None
        self.log_path = Path(tempfile.mkstemp(prefix="tritonserver-", suffix=".log")[1])

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def command(self) -> list[str]:
        cmd = [
            str(self.binary.executable),
            f"--model-repository={self.repository}",
            "--model-control-mode=explicit",
            *(f"--load-model={m}" for m in self.models),
            "--http-address=127.0.0.1",
            f"--http-port={self.http_port}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={self.grpc_port}",
            "--allow-metrics=false",
            "--exit-on-error=true",
            # a private shared-memory prefix: several servers (tests, benchmarks) can run at once
            f"--backend-config=python,shm-region-prefix-name=codedresnext{os.getpid()}x{self.http_port}x",
        ]
        if self.binary.backends is not None:
            cmd.append(f"--backend-directory={self.binary.backends}")
        return cmd

    def start(self) -> TritonServer:
        with open(self.log_path, "wb") as log:
            try:
                self.process = subprocess.Popen(
                    self.command(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=server_env(self.binary),
                    start_new_session=True,  # its own process group: stop() reaches the stubs too
                )
            except OSError as e:
                raise ServerError(f"cannot start {self.binary.executable}: {e}") from e
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(
                    f"tritonserver exited with code {self.process.returncode}:\n{self.log_tail()}"
                )
            if self.ready():
                return
            time.sleep(0.2)
        raise ServerError(f"tritonserver not ready after {self.ready_timeout_s:.0f} s:\n{self.log_tail()}")

    def ready(self) -> bool:
        """Server live and every loaded model ready (HTTP /v2/health/ready)."""
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""
        tail = "\n".join(text.splitlines()[-lines:])
        if "GLIBC" in text:
            tail += "\n(this system's glibc is older than the server needs: the wheel is manylinux_2_35)"
        return tail

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM to the process group (Triton unloads models and exits), SIGKILL if it lingers."""
        p, self.process = self.process, None
        if p is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout_s)
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)  # stubs left behind by a server that died
            p.wait()
        self.binary.close()
        self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
