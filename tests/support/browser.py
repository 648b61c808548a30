"""Headless Chromium (Debian's `chromium`, driven by Playwright) for the playground's tests: the
browser, pages that fail their test on a script error, and screenshots in test-artifacts/. The
`browser` and `page` fixtures in conftest.py are built from these."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Browser, Page, sync_playwright

from support import ROOT
from support.environment import CHROMIUM, require_chromium

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextmanager
def chromium() -> Iterator[Browser]:
    """Chromium, launched headless (the test fails or skips when it is missing)."""
    require_chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@contextmanager
def checked_page(browser: Browser) -> Iterator[Page]:
    """A page in a context of its own; at the end, any error the page logged fails the test."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 800},
        permissions=["clipboard-read", "clipboard-write"],
    )
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    # A Content-Security-Policy violation is a console error too, so the page must run as the
    # policy allows. Chromium logs each HTTP error answer (401, 400...) as a console error:
    # those are expected.
    opened.on(
        "console",
        lambda m: (
            errors.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    yield opened
    context.close()
    assert errors == [], f"the page logged errors: {errors}"


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)
