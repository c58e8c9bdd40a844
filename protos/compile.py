"""Compile nodepool.proto into hivemind_tui/proto/.

The generated gRPC module imports its messages as a top-level module (`import nodepool_pb2`), which breaks
inside a package; we rewrite that one line to a package-relative import. Run with the pinned grpcio-tools
(pyproject's `test` extra) so that the output is byte-identical to the committed files.

    python protos/compile.py [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from grpc_tools import protoc

PROTO_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = PROTO_DIR.parent / "hivemind_tui" / "proto"
GENERATED = ("nodepool_pb2.py", "nodepool_pb2_grpc.py", "nodepool_pb2.pyi")


def compile_proto(out_dir: Path) -> list[Path]:
    """Generate the three modules into `out_dir` and return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    # Relative paths keep the developer's checkout location out of the generated files.
    args = [
        "grpc_tools.protoc",
        f"--proto_path={PROTO_DIR.name}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"{PROTO_DIR.name}/nodepool.proto",
    ]

    cwd = os.getcwd()
    os.chdir(PROTO_DIR.parent)
    try:
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed")
    finally:
        os.chdir(cwd)
    grpc_module = out_dir / "nodepool_pb2_grpc.py"
    text = grpc_module.read_text()
    text = re.sub(r"^import nodepool_pb2 as", "from . import nodepool_pb2 as", text, flags=re.M)
    grpc_module.write_text(text)
    return [out_dir / name for name in GENERATED]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    for path in compile_proto(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
