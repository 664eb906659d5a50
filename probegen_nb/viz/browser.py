"""The system's headless Chromium: found in one place, started offline, shared by the tests and the figure export.

Nothing here downloads a browser: we use the Debian `chromium` package (or `$PROBEGEN_CHROMIUM`), and callers fall
back (HTML-only figures, skipped browser tests) when there is none.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
EXPORT_WIDTH = "export_width"  # layout.meta key: the width a responsive figure is drawn at in a PNG


def responsive(fig: Any, width: int) -> Any:
    """Let a plotly figure take the width of its notebook cell (no fixed width, which clipped at 1280 px) and keep
    `width` px for its PNG copy (`write_plotly_png`); returns the figure."""
    fig.update_layout(width=None, autosize=True, meta={EXPORT_WIDTH: width})
    return fig


def export_layout(fig_dict: dict[str, Any]) -> dict[str, Any]:
    """The figure as a PNG draws it: a responsive figure at its export width."""
    layout = fig_dict.get("layout", {})
    meta = layout.get("meta")
    if layout.get("width") is None and isinstance(meta, dict) and EXPORT_WIDTH in meta:
        return {**fig_dict, "layout": {**layout, "width": meta[EXPORT_WIDTH]}}
    return fig_dict

# Why: pages we render are local files; a browser that phones home (updates, sync, metrics, DNS prefetch) would hang
# or log errors on an offline machine and leak on an online one. Mapping every host to NOTFOUND makes an accidental
# CDN reference fail fast and visibly. No shell quoting: each flag is one argv item.
CHROMIUM_ARGS: tuple[str, ...] = (
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-domain-reliability",
    "--metrics-recording-only",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    # containers: we often run as root (Chromium refuses its sandbox there) with a tiny /dev/shm
    "--no-sandbox",
    "--disable-dev-shm-usage",
)


class BrowserNotFoundError(RuntimeError):
    """No usable Chromium: install Debian `chromium` or set PROBEGEN_CHROMIUM."""


def chromium_path() -> str | None:
    """`$PROBEGEN_CHROMIUM` if set (None when it is not an executable file), else the first Chromium on PATH."""
    override = os.environ.get("PROBEGEN_CHROMIUM")
    if override:
        return override if os.path.isfile(override) and os.access(override, os.X_OK) else None
    return next((p for name in CHROMIUM_NAMES if (p := shutil.which(name))), None)


def _require_chromium() -> str:
    path = chromium_path()
    if path is None:
        override = os.environ.get("PROBEGEN_CHROMIUM")
        where = f"PROBEGEN_CHROMIUM={override!r} is not an executable" if override else \
            f"none of {', '.join(CHROMIUM_NAMES)} is on PATH"
        raise BrowserNotFoundError(f"no Chromium: {where}; as root: apt-get install chromium")
    return path


def launch(playwright: Any) -> Any:
    """A headless, offline playwright Browser on the system Chromium (playwright's own downloads are never used)."""
    return playwright.chromium.launch(executable_path=_require_chromium(), headless=True, args=list(CHROMIUM_ARGS))


@dataclass
class PageCheck:
    """What a page logged while loading: console errors, uncaught exceptions, failed requests, images not shown."""

    errors: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)


def screenshot(url_or_path: str | Path, out_png: str | Path, browser: Any | None = None, width: int = 1280,
               height: int = 900, full_page: bool = True) -> PageCheck:
    """Load a page (a file path or URL), save a PNG of it, and report what went wrong while loading.

    Starts its own playwright/Chromium when `browser` is None (slower; tests pass the session's browser).
    """
    target = url_or_path if isinstance(url_or_path, str) and "://" in url_or_path else \
        Path(url_or_path).resolve().as_uri()
    if browser is None:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            own = launch(pw)
            try:
                return screenshot(target, out_png, own, width, height, full_page)
            finally:
                own.close()
    check = PageCheck()

    def on_console(message: Any) -> None:
        if message.type == "error":
            check.errors.append(f"console: {message.text}")

    page = browser.new_page(viewport={"width": width, "height": height})
    try:
        page.on("console", on_console)
        page.on("pageerror", lambda e: check.errors.append(f"pageerror: {e}"))
        page.on("requestfailed", lambda r: check.errors.append(f"request failed: {r.url} ({r.failure})"))
        page.goto(target, wait_until="load")
        check.broken_images = page.eval_on_selector_all(
            "img", "imgs => imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src'))")
        if full_page:  # Chromium does not paint off-screen iframes (other origins under file://): make all on-screen
            page.set_viewport_size({"width": width, "height": min(16384, max(height, page.evaluate(
                "document.documentElement.scrollHeight")))})
            page.wait_for_timeout(300)  # let iframes re-layout and paint
        out_png = Path(out_png)
        out_png.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out_png), full_page=full_page)
    finally:
        page.close()
    return check


# ---------------------------------------------------------------- plotly → PNG through kaleido


class _KaleidoSession:
    """One kaleido (Chromium) kept open on a private event loop: startup costs ~2 s, each figure then ~0.2 s."""

    def __init__(self, path: str, timeout: float) -> None:
        import kaleido
        from choreographer.browsers.chromium import Chromium

        class OfflineChromium(Chromium):  # choreographer's flags plus ours; it offers no other way to add flags
            def get_cli(self) -> list[str]:
                cli = list(super().get_cli())
                return cli + [a for a in CHROMIUM_ARGS if a not in cli]

        self.path, self.timeout = path, timeout
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="kaleido", daemon=True)
        self.thread.start()
        # mathjax=False: its default is a CDN URL; plotly.js comes from the installed plotly package
        self.kaleido = kaleido.Kaleido(path=path, browser_cls=OfflineChromium, mathjax=False, timeout=timeout)
        try:
            self._run(self.kaleido.open())
        except BaseException:
            self.close()
            raise

    def _run(self, coro: Any) -> Any:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(self.timeout)
        except BaseException:
            future.cancel()
            raise

    def png(self, fig_dict: dict[str, Any], scale: float) -> bytes:
        return self._run(self.kaleido.calc_fig(fig_dict, opts={"format": "png", "scale": scale}))

    def close(self) -> None:
        try:
            self._run(self.kaleido.close())
        except Exception:  # noqa: BLE001 (closing a browser that never opened; nothing more to clean)
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


_session: _KaleidoSession | None = None
# on a loaded machine a render can run before kaleido's page script has loaded ("kaleido_scopes is not defined"):
# a fresh browser then renders the figure
RENDER_ATTEMPTS = 2
_session_lock = threading.Lock()
_failed_to_start: dict[str, Exception] = {}  # Chromium path -> its error: a browser that would not start is not retried


def write_plotly_png(fig: Any, out: str | Path, scale: float = 2.0, timeout: float = 60.0) -> Path:
    """Render a plotly Figure or FigureWidget to PNG with the system Chromium, reusing one browser per process.

    Raises BrowserNotFoundError without Chromium, and whatever kaleido raises if rendering fails.
    """
    global _session
    path = _require_chromium()
    fig_dict = export_layout(fig.to_dict() if hasattr(fig, "to_dict") else dict(fig))  # in the caller's thread
    with _session_lock:
        for attempt in range(RENDER_ATTEMPTS):
            if path in _failed_to_start:
                raise _failed_to_start[path].with_traceback(None)  # the same error, so callers can tell a repeat
            if _session is not None and _session.path != path:
                close_kaleido()
            if _session is None:
                try:
                    _session = _KaleidoSession(path, timeout)
                except Exception as e:
                    _failed_to_start[path] = e
                    raise
            try:
                data = _session.png(fig_dict, scale)
                break
            except Exception:
                close_kaleido()  # a failed render may leave the tab wedged: start afresh
                if attempt == RENDER_ATTEMPTS - 1:
                    raise
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    return out


def close_kaleido() -> None:
    """Close the shared kaleido browser (also run at exit); the next export starts a new one."""
    global _session
    if _session is not None:
        session, _session = _session, None
        session.close()


atexit.register(close_kaleido)
