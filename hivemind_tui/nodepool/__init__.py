"""The embedded Node Pool: a real grpc.aio server of protos/nodepool.proto with SQLite storage."""
