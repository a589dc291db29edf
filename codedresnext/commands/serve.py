"""codedresnext serve: run a real Triton server on a repository written by `codedresnext triton`."""

from __future__ import annotations

import argparse
import signal
import threading

from ..deploy.serve import TritonServer
from ..errors import CodedResNeXtError
from . import _args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve a Triton model repository (tritonserver on 127.0.0.1)")
    p.add_argument(
        "directory",
        type=_args.existing_dir,
        help="model repository (`codedresnext triton --python --out DIR`)",
    )
    p.add_argument("--http-port", type=_args.port, default=8000, help="HTTP (KServe v2) port on 127.0.0.1")
    p.add_argument("--grpc-port", type=_args.port, default=8001, help="gRPC port on 127.0.0.1")
    p.add_argument(
        "--ready-timeout", type=_args.positive_float, default=120.0, help="seconds to wait for the models"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.http_port == args.grpc_port:
        raise CodedResNeXtError(f"--http-port and --grpc-port are both {args.http_port}; give two ports")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with TritonServer(
        args.directory, http_port=args.http_port, grpc_port=args.grpc_port, ready_timeout_s=args.ready_timeout
    ) as srv:
        for name, why in srv.skipped.items():
            print(f"skipped {name}: {why}")
        print(f"models: {', '.join(srv.models)}")
        print(f"HTTP  http://{srv.http_url}  (KServe v2: /v2/models/<model>/infer)")
        print(f"gRPC  {srv.grpc_url}")
        print("ready; Ctrl-C or SIGTERM stops the server", flush=True)
        try:
            while not stop.wait(0.5):
                if srv.process is None or srv.process.poll() is not None:
                    print(f"tritonserver exited:\n{srv.log_tail()}")
                    return 1
        except KeyboardInterrupt:
            pass
        print("stopping", flush=True)
    return 0
