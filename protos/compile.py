"""Compile nodepool.proto into hivemind_tui/proto/.

protoc writes the messages and the gRPC glue; mypy-protobuf writes the type stubs of both (`.pyi`), so that
mypy checks every call into the generated code. The generated modules import their messages as a top-level
module (`import nodepool_pb2`), which breaks inside a package; we rewrite that line to a package-relative
import. Run with the pinned grpcio-tools and mypy-protobuf (pyproject's `test` extra) so that the output is
byte-identical to the committed files.

    python protos/compile.py [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from pathlib import Path

from grpc_tools import protoc

PROTO_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = PROTO_DIR.parent / "hivemind_tui" / "proto"
GENERATED = ("nodepool_pb2.py", "nodepool_pb2_grpc.py", "nodepool_pb2.pyi", "nodepool_pb2_grpc.pyi")
TOP_LEVEL_IMPORT = re.compile(r"^import nodepool_pb2 as", flags=re.M)


def compile_proto(out_dir: Path) -> list[Path]:
    """Generate the modules and their stubs into `out_dir` and return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    # Relative paths keep the developer's checkout location out of the generated files.
    args = [
        "grpc_tools.protoc",
        f"--proto_path={PROTO_DIR.name}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--mypy_out={out_dir}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--mypy_grpc_out={out_dir}",
        f"{PROTO_DIR.name}/nodepool.proto",
    ]

    cwd = os.getcwd()
    os.chdir(PROTO_DIR.parent)
    try:
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed")
    finally:
        os.chdir(cwd)
    for name in ("nodepool_pb2_grpc.py", "nodepool_pb2_grpc.pyi"):
        module = out_dir / name
        module.write_text(TOP_LEVEL_IMPORT.sub("from . import nodepool_pb2 as", module.read_text()))
    return [out_dir / name for name in GENERATED]


def _plugin(name: str) -> str:
    """mypy-protobuf's protoc plugins sit beside the running interpreter (the venv's bin/)."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: pip install -e '.[test]' (it brings mypy-protobuf)")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    for path in compile_proto(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
