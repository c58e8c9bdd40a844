"""The base that the Node Pool, its workers and the client layers share: settings, the data dir, errors,
logging, SQLite, time, zip limits and the upload chunk codec. Nothing here imports from the layers above."""
