"""Finding the user's ``Migration`` from ``--app module:attr``, the way uvicorn and celery do."""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from typing import Any

from migration_errors import AppNotFound, ConfigurationError

from migration_kit.migration import Migration

__all__ = ["AppNotFound", "load_app"]


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    user = [f for f in frames if "importlib" not in f.filename]
    if not user:
        return ""
    f = user[-1]
    return f" (at {os.path.relpath(f.filename)}:{f.lineno})"


def load_app(spec: str, *, store: str | None = None, default_store: str | None = None) -> Migration:
    """Import ``module:attr`` and return the ``Migration`` it names.

    ``attr`` may be a ``Migration`` or a zero-argument factory returning one
    (a factory taking ``store=`` gets it). ``store`` overrides the app's
    store; ``default_store`` is used when the app did not choose one.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise AppNotFound(f"--app {spec!r} is not of the form module:attribute (for example examples.orders.app:migration)")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise AppNotFound(
                f"--app {spec}: no module named {exc.name!r} (run from the project's root directory, or check the spelling)"
            ) from None
        raise AppNotFound(f"--app {spec}: importing {module_name!r} failed: {exc}{_where(exc)}") from None
    except Exception as exc:  # translated: the user's module failed to import
        raise AppNotFound(f"--app {spec}: importing {module_name!r} failed: {type(exc).__name__}: {exc}{_where(exc)}") from None
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise AppNotFound(f"--app {spec}: module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(target, Migration):
        if not callable(target):
            raise AppNotFound(f"--app {spec}: {attr!r} is a {type(target).__name__}, not a Migration or a factory of one")
        try:
            target = _call_factory(target, store)
        except ConfigurationError as exc:
            raise AppNotFound(f"--app {spec}: {exc}") from None
        except Exception as exc:  # translated: the user's factory failed
            raise AppNotFound(f"--app {spec}: calling {attr}() failed: {type(exc).__name__}: {exc}{_where(exc)}") from None
        if not isinstance(target, Migration):
            raise AppNotFound(f"--app {spec}: {attr}() returned a {type(target).__name__}, not a Migration")
    if store is not None:
        if target.store.url != store:
            target.use_store(store)
    elif default_store is not None and not target.store_explicit:
        target.use_store(default_store)
    return target


def _call_factory(factory: Any, store: str | None) -> Any:
    import inspect

    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    if store is not None and "store" in params:
        return factory(store=store)
    return factory()
