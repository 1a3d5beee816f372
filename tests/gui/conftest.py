"""GUI tests: a real napari viewer under a virtual X display (Xvfb + Mesa).

The display comes from pytest-xvfb when it is installed, else this file starts Xvfb
itself when the binary exists. Tests that need a viewer (those using ``qtbot`` or
``make_napari_viewer``) are skipped, with the reason, when napari, Qt, pytest-qt or a
display is missing; the reader/writer tests here need none of them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))  # rule_backend.py

_xvfb: subprocess.Popen | None = None
_GUI_FIXTURES = {"qtbot", "make_napari_viewer", "viewer_widget"}


def _die_with_parent() -> None:
    """In the child: get SIGTERM when pytest dies, even when it is killed (Linux)."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _start_xvfb() -> None:
    """Start ``Xvfb -displayfd`` on a free display number and export DISPLAY."""
    global _xvfb
    read, write = os.pipe()
    try:
        _xvfb = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x1024x24", "-nolisten",
             "tcp"], pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent)
        os.close(write)
        with os.fdopen(read) as f:
            number = f.readline().strip()
    except OSError:
        _xvfb = None
        return
    if number:
        os.environ["DISPLAY"] = f":{number}"


def _no_gui_reason() -> str | None:
    for mod, fix in (("napari", "pip install 'napari-segany[gui]'"),
                     ("qtpy", "pip install 'napari-segany[gui]'"),
                     ("pytestqt", "pip install pytest-qt")):
        try:
            __import__(mod)
        except Exception as exc:  # ImportError, or a Qt binding that fails to load
            return f"{mod} cannot be imported ({exc}); {fix}"
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                 or os.environ.get("WAYLAND_DISPLAY")):
        return ("no display: install Xvfb and Mesa (apt-get install xvfb libgl1-mesa-dri) "
                "or pytest-xvfb, or run under xvfb-run")
    if os.environ.get("QT_QPA_PLATFORM") == "offscreen":
        return "QT_QPA_PLATFORM=offscreen has no OpenGL, which napari's canvas needs"
    return None


@pytest.hookimpl(trylast=True)  # after pytest-xvfb, which then has exported DISPLAY
def pytest_configure(config: pytest.Config) -> None:
    if (sys.platform.startswith("linux") and not os.environ.get("DISPLAY")
            and shutil.which("Xvfb")):
        _start_xvfb()
    if os.environ.get("DISPLAY") and os.environ.get("QT_QPA_PLATFORM") == "offscreen":
        os.environ["QT_QPA_PLATFORM"] = "xcb"  # offscreen has no OpenGL; the display has


def pytest_unconfigure(config: pytest.Config) -> None:
    if _xvfb is not None:
        _xvfb.terminate()
        _xvfb.wait(10)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = None
    for item in items:
        if HERE not in Path(str(item.path)).parents:
            continue
        if _GUI_FIXTURES & set(getattr(item, "fixturenames", ())):
            reason = reason or _no_gui_reason() or ""
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


# ----------------------------------------------------------------------------------- fixtures
@pytest.fixture
def viewer_widget(make_napari_viewer, qtbot):
    """A napari viewer with the widget opened through the plugin manifest."""
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-segany", "Segment Anything")
    yield viewer, widget
    widget.jobs.cancel()
    assert widget.jobs.wait(60), "a worker was still running at the end of the test"


@pytest.fixture
def rule_model(monkeypatch):
    """Register the torch-free RuleBackend (tests/rule_backend.py) as model ``rule_test``.

    Returns a namespace: ``make(name)`` builds the backend (tests may replace it), ``made``
    lists the backends built.
    """
    from napari_segany.engine import registry
    from rule_backend import RuleBackend

    holder = SimpleNamespace(made=[], make=lambda name: RuleBackend(name=name))

    def factory(spec, state_dict, **kwargs):
        backend = holder.make(spec.name)
        holder.made.append(backend)
        return backend

    monkeypatch.setitem(registry._FAMILIES, "rule", factory)
    monkeypatch.setitem(registry._MODELS, "rule_test",
                        registry.ModelSpec("rule_test", "rule", "rule"))
    return holder
