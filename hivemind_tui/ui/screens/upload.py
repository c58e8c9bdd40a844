"""Task upload: pick a zip, set type, priority, needs and shards, preview the split, then submit.

Values are checked as you type; the manifest's values are filled in when a zip is picked. `ctrl+r` shows
the splitter's dry run (subtasks, sizes, weights, any limit they would break). `ctrl+s` submits as an
app-level worker, so the upload goes on when you switch screens; its progress shows here and in a toast.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.suggester import Suggester
from textual.validation import Integer
from textual.widgets import Button, DirectoryTree, Input, Label, ProgressBar, Select, Static

from hivemind_tui.core.errors import HivemindError
from hivemind_tui.core.zipsafe import ZipLimits
from hivemind_tui.services.task_manager import Progress, SubmitOptions
from hivemind_tui.services.task_splitter import SplitPlan, read_task
from hivemind_tui.ui.format import plain, size
from hivemind_tui.ui.hive import hive_of, watch_app
from hivemind_tui.ui.widgets.footer import ConsoleFooter
from hivemind_tui.ui.widgets.header import ConsoleHeader
from hivemind_tui.ui.worker_errors import ReportsWorkerErrors

TYPES = [
    ("data_processing", "data_processing"),
    ("machine_learning", "machine_learning"),
    ("simulation", "simulation"),
    ("other (one task)", "other"),
]
NUMBERS = {"priority": -1000, "memory_gb": 0, "cpu_score": 0, "gpu_score": 0, "gpu_memory_gb": 0, "shards": 1}


class ZipTree(DirectoryTree):
    """Folders and .zip files only."""

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        return [p for p in paths if not p.name.startswith(".") and (p.is_dir() or p.suffix.lower() == ".zip")]


class PathSuggester(Suggester):
    """Completes paths from the filesystem (in a thread: listing a folder is I/O)."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        return await asyncio.to_thread(_complete, value)


def _complete(value: str) -> str | None:
    path = Path(value).expanduser()
    folder, stem = (path, "") if value.endswith("/") else (path.parent, path.name)
    try:
        names = sorted(
            p.name + ("/" if p.is_dir() else "")
            for p in folder.iterdir()
            if p.name.startswith(stem) and (p.is_dir() or p.suffix == ".zip")
        )
    except OSError:
        return None
    return value + names[0][len(stem) :] if names else None


class PathInput(Input):
    """The zip's path: tab takes the completion shown (as a shell does) and moves on only when none is."""

    BINDINGS = [Binding("tab", "complete", "Complete", show=False)]

    def action_complete(self) -> None:
        if self._suggestion and self.cursor_at_end:
            self.value = self._suggestion
            self.cursor_position = len(self.value)
        else:
            self.screen.focus_next()


class UploadScreen(ReportsWorkerErrors, Screen[None]):
    CSS_PATH = "upload.tcss"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("ctrl+r", "preview", "Preview split"),
        Binding("ctrl+s", "submit", "Submit"),
    ]

    def compose(self) -> ComposeResult:
        start = Path(hive_of(self).backend.settings.upload_folder or ".").expanduser()
        yield ConsoleHeader()
        with Horizontal(id="upload-main"):
            with Vertical(id="picker"):
                yield ZipTree(start, id="zip-tree")
                yield PathInput(
                    placeholder="path to a task .zip (tab completes)", id="zip-path", suggester=PathSuggester()
                )
                yield Static("", id="path-error")
            with VerticalScroll(id="form"):
                yield Label("Task type")
                yield Select(TYPES, value="other", allow_blank=False, id="task_type")
                with Grid(id="numbers"):
                    for name, minimum in NUMBERS.items():
                        yield Label(name.replace("_", " "))
                        yield Input(
                            id=name,
                            validators=[Integer(minimum=minimum)],
                            validate_on=["changed"],
                            placeholder="auto" if name == "shards" else "0",
                        )
                    yield Label("location")
                    yield Input(id="location", placeholder="any")
                    yield Label("gpu name")
                    yield Input(id="gpu_name", placeholder="any")
                yield Static("", id="form-error")
                with Horizontal(id="upload-buttons"):
                    yield Button("Preview (ctrl+r)", id="preview")
                    yield Button("Submit (ctrl+s)", id="submit", variant="primary")
        yield Static("Pick a zip to see its split.", id="plan")
        yield ProgressBar(id="upload-progress", show_eta=False)
        yield ConsoleFooter()

    def on_mount(self) -> None:
        if getattr(self.app, "deterministic", False):
            for field in self.query(Input):
                field.cursor_blink = False
        self.query_one("#upload-progress", ProgressBar).display = False
        watch_app(self, "upload_progress", self._progress, init=True)
        # Keys typed at once go into the path, never to the app's one-letter bindings (p pauses, say).
        self.query_one("#zip-path", Input).focus()

    # -- picking and the manifest -----------------------------------------------------------------
    @on(DirectoryTree.FileSelected, "#zip-tree")
    def _picked(self, event: DirectoryTree.FileSelected) -> None:
        self.query_one("#zip-path", Input).value = str(event.path)
        self.read_manifest(event.path)

    @on(Input.Submitted, "#zip-path")
    def _typed(self, event: Input.Submitted) -> None:
        self.read_manifest(Path(event.value).expanduser())

    @work(exclusive=True, group="manifest", exit_on_error=False, description="read manifest")
    async def read_manifest(self, path: Path) -> None:
        s = hive_of(self).backend.settings
        error = self.query_one("#path-error", Static)  # beside the path, where the eye is
        problem = await asyncio.to_thread(_path_problem, path)
        if problem:
            error.update(f"[b red]{plain(problem)}[/]")
            return
        try:
            manifest = await asyncio.to_thread(read_task, path, ZipLimits(s.max_unzipped_bytes, s.max_zip_ratio))
        except (HivemindError, OSError) as exc:
            error.update(f"[b red]{plain(path.name)}: {plain(getattr(exc, 'message', exc))}[/]")
            return
        error.update(f"[green]{plain(path.name)}[/]: manifest read ({plain(manifest.task_type)})")
        known = [value for _, value in TYPES]
        self.query_one("#task_type", Select).value = manifest.task_type if manifest.task_type in known else "other"
        self.query_one("#priority", Input).value = str(manifest.priority)
        if manifest.shards:
            self.query_one("#shards", Input).value = str(manifest.shards)
        for key, value in manifest.resources.items():
            self.query_one(f"#{key}", Input).value = str(value)
        self.action_preview()

    def options(self) -> tuple[Path, SubmitOptions] | None:
        """The form as submit options, or None: the problem shown beside its field, and in a toast that
        names the field (the form's own line may be below the fold)."""
        path_text = self.query_one("#zip-path", Input).value.strip()
        if not path_text:
            self._refuse("#path-error", "the task zip: pick one in the tree or type its path", "#zip-path")
            return None
        values: dict[str, int | None] = {}
        for name in NUMBERS:
            field = self.query_one(f"#{name}", Input)
            if field.value.strip() and not field.is_valid:
                words = f"{name.replace('_', ' ')}: a whole number of at least {NUMBERS[name]}"
                self._refuse("#form-error", words, f"#{name}")
                return None
            values[name] = int(field.value) if field.value.strip() else None
        resources: dict[str, int | str | None] = {
            k: values[k] for k in ("memory_gb", "cpu_score", "gpu_score", "gpu_memory_gb")
        }
        resources.update(
            location=self.query_one("#location", Input).value.strip() or None,
            gpu_name=self.query_one("#gpu_name", Input).value.strip() or None,
        )
        task_type = str(self.query_one("#task_type", Select).value)
        return Path(path_text).expanduser(), SubmitOptions(task_type, values["priority"], values["shards"], resources)

    def _refuse(self, where: str, words: str, field: str) -> None:
        self.query_one(where, Static).update(f"[b red]{plain(words)}[/]")
        self.query_one(field).focus()
        self.notify(f"cannot go on: {words}", severity="error")

    # -- preview and submit -----------------------------------------------------------------------
    @on(Button.Pressed, "#preview")
    def action_preview(self) -> None:
        chosen = self.options()
        if chosen is not None:
            self.query_one("#plan", Static).update("planning…")
            self.preview(*chosen)

    @work(exclusive=True, group="plan", exit_on_error=False, description="preview")
    async def preview(self, path: Path, options: SubmitOptions) -> None:
        try:
            plan = await hive_of(self).backend.plan(path, options)
        except (HivemindError, OSError) as exc:
            self.query_one("#plan", Static).update(f"[b red]{plain(getattr(exc, 'message', exc))}[/]")
            return
        self.query_one("#plan", Static).update(plan_text(plan))

    @on(Button.Pressed, "#submit")
    def action_submit(self) -> None:
        chosen = self.options()
        if chosen is None:
            return
        if hive_of(self).readonly:
            self.query_one("#form-error", Static).update("[b red]read-only: submitting is disabled[/]")
            return
        hive_of(self).submit_upload(*chosen)

    def _progress(self, progress: Progress | None) -> None:
        bar = self.query_one("#upload-progress", ProgressBar)
        if progress is None:
            bar.display = False
            return
        bar.display = True
        bar.update(total=max(progress.bytes_total, 1), progress=progress.bytes_done)


def plan_text(plan: SplitPlan) -> str:
    head = (
        f"[b]{len(plan.subtasks)} subtask(s)[/] of {plain(plan.task_type)}, limit {size(plan.limit_bytes)} each"
        if plan.split
        else f"[b]one task[/] ({plain(plan.task_type)}: not split), {size(plan.subtasks[0].size_bytes)}"
    )
    rows = [
        f"  #{s.index:<3} {size(s.size_bytes):>9}  "
        + (f"{s.lines} lines  " if s.lines is not None else "")
        + (f"weight {s.weight:.2f}  " if plan.split else "")
        + (
            " ".join(f"{plain(k)}={plain(v)}" for k, v in (s.params or {}).items())
            if plan.task_type != "data_processing"
            else ""
        )
        for s in plan.subtasks[:12]
    ]
    if len(plan.subtasks) > 12:
        rows.append(f"  … {len(plan.subtasks) - 12} more")
    notes = [f"[dim]note: {plain(n)}[/]" for n in plan.notes]
    problems = [f"[b red]{plain(p)}[/]" for p in plan.problems]
    placement = "[dim]the pool places each subtask; weights follow free slots x CPU score[/]" if plan.split else ""
    return "\n".join([head, *rows, *notes, *problems, placement])


def _path_problem(path: Path) -> str | None:
    """Why `path` cannot be a task zip before reading it: empty, missing, a folder."""
    if not str(path) or str(path) == ".":
        return "the task zip: pick one in the tree or type its path"
    if not path.exists():
        return f"no such file: {path}"
    if path.is_dir():
        return f"{path} is a folder; pick a .zip in it"
    return None
