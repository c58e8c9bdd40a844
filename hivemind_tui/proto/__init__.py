"""Generated gRPC stubs for protos/nodepool.proto. Never edit by hand: run `python protos/compile.py`."""
