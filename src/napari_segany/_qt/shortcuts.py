"""Viewer-wide keyboard shortcuts, registered as napari actions.

Each shortcut is a napari action (``napari-segany:commit``, ...) registered with napari's
action manager on the viewer, so it works whichever layer is active, it is listed (and
can be changed) in napari's Preferences > Shortcuts under the viewer's key bindings, and
a change made there is what the buttons and the help panel show. An action calls the
dock widget of the viewer it was pressed in. Where a layer's own key binding would win
(the Labels layer's Ctrl+Z is its in-memory history), the widget binds the action on that
layer too (:func:`bind_on_layer`), so that the session's undo runs.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

__all__ = ["SHORTCUTS", "Shortcut", "register", "attach", "key_of", "bind_on_layer",
           "help_text"]


@dataclass(frozen=True)
class Shortcut:
    name: str  # action name without the package prefix
    key: str  # default key, napari's spelling
    label: str  # what the help panel calls it
    method: str  # the widget method it calls

    @property
    def action(self) -> str:
        return f"napari-segany:{self.name}"


#: The shortcuts, in the order of the help panel. Keys were chosen so that no layer type
#: napari ships binds them itself (checked on Points, Shapes, Labels and Image layers).
SHORTCUTS = (
    Shortcut("preview", "Shift-S", "segment / preview the current object now", "preview_now"),
    Shortcut("commit", "C", "commit the preview into the labels store", "commit"),
    Shortcut("undo", "Control-Z", "undo the last operation (any kind)", "undo"),
    Shortcut("redo", "Control-Shift-Z", "redo", "redo"),
    Shortcut("toggle_polarity", "T", "toggle positive / negative clicks (or the selected "
             "points)", "toggle_positive"),
    Shortcut("new_object", "N", "new object id", "new_object"),
    Shortcut("next_object", "Alt-Right", "next object", "next_object"),
    Shortcut("previous_object", "Alt-Left", "previous object", "previous_object"),
    Shortcut("clear_prompts", "Shift-C", "clear the current object's prompts",
             "clear_prompts"),
    Shortcut("propagate", "Alt-P", "propagate through the volume", "propagate"),
    Shortcut("accept_review", "Alt-A", "accept every staged object", "accept_all"),
)

_BY_NAME = {s.name: s for s in SHORTCUTS}
_widgets: dict[int, weakref.ReferenceType] = {}
_registered = False


def _key(viewer: Any) -> int:
    # a plugin's viewer is napari's PublicOnlyProxy; the actions receive the viewer itself
    return id(getattr(viewer, "__wrapped__", viewer))


def _widget_of(viewer: Any) -> Any:
    ref = _widgets.get(_key(viewer))
    return ref() if ref is not None else None


def _command(shortcut: Shortcut):
    def run(viewer):  # noqa: ANN001, ANN202 (napari injects by annotation: leave none)
        widget = _widget_of(viewer)
        if widget is not None:
            getattr(widget, shortcut.method)()

    run.__name__ = shortcut.name
    return run


def register() -> None:
    """Register the actions once per process and bind their default keys (unless the
    user's napari settings bound them already)."""
    global _registered
    if _registered:
        return
    from napari.components import ViewerModel
    from napari.utils.action_manager import action_manager

    for s in SHORTCUTS:
        action_manager.register_action(s.action, _command(s), f"Segment Anything: {s.label}",
                                       ViewerModel)
        if not action_manager._shortcuts.get(s.action):  # no user setting for it
            action_manager.bind_shortcut(s.action, s.key)
    _registered = True


def attach(viewer: Any, widget: Any) -> None:
    """Route the actions pressed in ``viewer`` to ``widget`` (held weakly)."""
    register()
    _widgets[_key(viewer)] = weakref.ref(widget)


def key_of(name: str) -> str:
    """The key bound to a shortcut now, as napari shows it (e.g. ``Ctrl+Z``)."""
    from napari.utils.action_manager import action_manager
    from napari.utils.interactions import Shortcut as NapariShortcut

    keys = action_manager._shortcuts.get(_BY_NAME[name].action) or []
    return str(NapariShortcut(keys[0])) if keys else ""


def bind_on_layer(layer: Any, names: tuple[str, ...], viewer: Any) -> None:
    """Bind shortcuts on one layer too, where its own key bindings would shadow them."""
    from napari.utils.action_manager import action_manager

    vref = weakref.ref(getattr(viewer, "__wrapped__", viewer))
    for name in names:
        s = _BY_NAME[name]

        def run(_layer: Any, s: Shortcut = s) -> None:
            v = vref()
            widget = _widget_of(v) if v is not None else None
            if widget is not None:
                getattr(widget, s.method)()

        for key in action_manager._shortcuts.get(s.action) or [s.key]:
            layer.bind_key(str(key), run, overwrite=True)


def help_text() -> str:
    """The shortcuts as an HTML table (for the help panel)."""
    rows = "".join(f"<tr><td><b>{key_of(s.name) or '—'}</b></td><td>{s.label}</td></tr>"
                   for s in SHORTCUTS)
    return (f"<table cellspacing='4'>{rows}</table><p>Change them in napari's Preferences > "
            "Shortcuts (viewer key bindings, 'Segment Anything: …').</p>")
