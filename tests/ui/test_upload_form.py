"""The upload form: errors where the eye is, tab completes paths, first keys go into the path."""

from __future__ import annotations

from textual.widgets import Input, Select, Static

from hivemind_tui.ui.app import HivemindApp
from hivemind_tui.ui.screens.upload import UploadScreen
from tests.ui.demo_shots import DEMO_FILES, demo_app, settle


def text(app: HivemindApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


async def test_first_keys_go_into_the_path_and_tab_completes_it() -> None:
    app = demo_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("u")
        await settle(pilot)
        assert isinstance(app.screen, UploadScreen)
        await pilot.press(*"tests/ui/demo_f")  # p, u, t, ... are app keys elsewhere: not here
        await settle(pilot)
        field = app.screen.query_one("#zip-path", Input)
        assert field.value == "tests/ui/demo_f" and not app.paused
        await pilot.press("tab")
        await settle(pilot)
        assert field.value == f"{DEMO_FILES}/" and field.has_focus
        await pilot.press("tab")
        await settle(pilot)
        assert field.value == f"{DEMO_FILES}/etl-job.zip"
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen.query_one("#task_type", Select).value == "data_processing"
        assert "manifest read" in text(app, "#path-error") and "data_processing" in text(app, "#plan")


async def test_errors_show_beside_their_field_and_in_a_toast() -> None:
    app = demo_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("u")
        await settle(pilot)
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "pick one in the tree" in text(app, "#path-error")
        assert any("cannot go on: the task zip" in n.message for n in app._notifications)
        field = app.screen.query_one("#zip-path", Input)
        field.value = "no/such/file.zip"
        await pilot.press("enter")
        await settle(pilot)
        assert "no such file: no/such/file.zip" in text(app, "#path-error")
        field.value = f"{DEMO_FILES}/etl-job.zip"
        app.screen.query_one("#priority", Input).value = "high"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert any("cannot go on: priority" in n.message for n in app._notifications)
        assert app.screen.query_one("#priority", Input).has_focus
