"""A backend that lets the login screen paint before the services (gRPC, SQLite, psutil) are imported.

The first frame needs only the pool address, whether it is embedded and the remembered user; `open()`
then imports and builds the real `LiveBackend` in a thread and hands every other call to it.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hivemind_tui.core.config import Settings
from hivemind_tui.core.datadir import DataDir

if TYPE_CHECKING:
    from hivemind_tui.services.models import ConnectionState
    from hivemind_tui.ui.backend import LiveBackend


class DeferredBackend:
    def __init__(
        self,
        settings: Settings,
        data_dir: DataDir,
        address: str,
        embedded: bool,
        mounts: list[Path],
        session_file: Path | None = None,
    ) -> None:
        self.settings = settings
        self.clock = time.time
        self._data_dir = data_dir
        self._address = address
        self._embedded = embedded
        self._mounts = mounts
        self._session_file = session_file
        self._live: LiveBackend | None = None
        self._remembered = self._read_token_file()

    def _read_token_file(self) -> dict[str, Any]:
        """The remembered session as the session service keeps it (same file name rule), if still valid."""
        name = re.sub(r"[^A-Za-z0-9.-]", "_", self._address) + ".json"
        try:
            text = (self._session_file or self._data_dir.tokens / name).read_text()
        except OSError:
            return {}
        import json  # only with a remembered session: a first start paints without it

        try:
            data = json.loads(text)
        except ValueError:
            return {}
        expires = data.get("expires_at")
        return data if expires is None or expires > time.time() else {}

    def _build(self) -> LiveBackend:
        from hivemind_tui.services.host_metrics import PsutilMetrics
        from hivemind_tui.ui.backend import LiveBackend

        return LiveBackend(
            self.settings,
            self._data_dir,
            self._address,
            self._embedded,
            PsutilMetrics(self._mounts),
            self.clock,
            self._session_file,
        )

    async def open(self) -> None:
        live = await asyncio.to_thread(self._build)
        await live.open()
        self._live = live

    async def close(self) -> None:
        if self._live is not None:
            await self._live.close()

    @property
    def address(self) -> str:
        return self._live.address if self._live else self._address

    @property
    def embedded(self) -> bool:
        return self._live.embedded if self._live else self._embedded

    @property
    def username(self) -> str:
        return self._live.username if self._live else str(self._remembered.get("username", ""))

    @property
    def role(self) -> str:
        if self._live:
            return self._live.role
        return "viewer" if self.settings.readonly else str(self._remembered.get("role", ""))

    @property
    def connection(self) -> ConnectionState:
        if self._live:
            return self._live.connection
        from hivemind_tui.services.models import ConnectionState

        return ConnectionState()

    @property
    def admin_password_file(self) -> Path | None:
        return self._data_dir.pool / "admin-password" if self.embedded else None

    @property
    def exports_dir(self) -> Path:
        return self._data_dir.exports

    def has_session(self) -> bool:
        return self._live.has_session() if self._live else bool(self._remembered)

    def __getattr__(self, name: str) -> Any:
        """Everything else is the live backend's, available once `open()` has run."""
        live = self.__dict__.get("_live")
        if live is None:
            raise AttributeError(f"{name}: the backend is still opening")
        return getattr(live, name)
