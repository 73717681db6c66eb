"""The user's app, imported the way uvicorn imports it, and the errors a user can make naming it.

`PKG.MODULE:APP` with the app folder (`--app-dir`, default the current directory) first on
`sys.path`, as `uvicorn --app-dir` does; `--factory` calls the object to get the app. Nothing of
the user's code is edited or copied. Each bad input is a `TargetError` with one line that says
what was wrong and what to do, which the command prints with exit code 2.
"""

import inspect
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uvicorn.importer import ImportFromStringError, import_from_string


class TargetError(Exception):
    """The app cannot be probed as named: one line for the user."""


@dataclass(frozen=True)
class Target:
    """Where the user's app is: `module:attribute`, the folder put on sys.path, a factory."""

    spec: str
    app_dir: Path
    factory: bool = False

    def __post_init__(self) -> None:
        module, _, attribute = self.spec.partition(":")
        if not module or not attribute:
            raise TargetError(
                f"{self.spec!r} is not PKG.MODULE:APP (e.g. `myapp.main:app`), as uvicorn takes it"
            )
        if not self.app_dir.is_dir():
            raise TargetError(f"--app-dir {self.app_dir} is not a folder")

    @property
    def module(self) -> str:
        """The module part, e.g. `myapp.main`."""
        return self.spec.partition(":")[0]

    def argv(self) -> list[str]:
        """How a child process is told about this target (probe.serve, probe.inventory)."""
        return [self.spec, "--app-dir", str(self.app_dir), *(["--factory"] if self.factory else [])]


# The lab's own top-level packages: the probe's processes import them beside the user's app.
LAB_ROOT = Path(__file__).resolve().parent.parent
LAB_PACKAGES = ("analysis", "contract", "loadtests", "probe", "servers")


def shadowing(folder: Path) -> list[str]:
    """The lab's package names that a folder first on sys.path (the app's, or the current one:
    `python -m probe.serve` puts it first) also holds at its top (`analysis/`, `probe.py`, ...):
    Python imports one module per name, so one would get the other's."""
    root = folder.resolve()
    if root == LAB_ROOT:
        return []  # the lab's own apps (`servers.sync_app:app`)
    return [
        name
        for name in LAB_PACKAGES
        if (root / name / "__init__.py").is_file() or (root / f"{name}.py").is_file()
    ]


def load(target: Target) -> Any:
    """Import the app (and call the factory); TargetError with one line when it cannot be.

    An exception raised by the user's module itself is reported with its type, message and the
    line of the user's code it came from: the probe cannot run an app that does not import.
    """
    for first, what in ((target.app_dir, "--app-dir"), (Path.cwd(), "the current folder")):
        if clash := shadowing(first):
            names = ", ".join(f"`{n}`" for n in clash)
            raise TargetError(
                f"{first.resolve()} ({what}) has top-level {names}, the name of one of the "
                "lab's own packages, and one Python process cannot import both: run the probe "
                "from, and with --app-dir set to, a folder without it (the one above, say)"
            )
    folder = str(target.app_dir.resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        found = import_from_string(target.spec)
    except ImportFromStringError as exc:
        raise TargetError(f"{exc} (with {folder} first on sys.path; see --app-dir)") from None
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top and top == target.module.split(".")[0]:  # the app's own package is not there
            raise TargetError(
                f"importing {target.module} raised {where(exc)}: it is not in {folder} "
                "(put the folder that holds it first with --app-dir)"
            ) from None
        # The app's own dependency is not installed here.
        raise TargetError(
            f"importing {target.module} raised {where(exc)}: install the app's dependencies "
            f"into the Python the probe runs ({sys.executable} -m pip install ...), or install "
            "the lab into the app's own environment (pip install -e PATH/TO/LAB)"
        ) from None
    except Exception as exc:  # the user's module raised while it imported
        raise TargetError(f"importing {target.module} raised {where(exc)}") from None
    if target.factory:
        if not callable(found):
            raise TargetError(f"{target.spec} is not callable, so it cannot be a --factory")
        try:
            found = found()
        except Exception as exc:
            raise TargetError(f"the factory {target.spec}() raised {where(exc)}") from None
    check_asgi(found, target.spec)
    return found


def where(exc: BaseException) -> str:
    """`ValueError: bad (myapp/main.py:12)`: an exception and the innermost line it came from."""
    frames = traceback.extract_tb(exc.__traceback__)
    line = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}{': ' + text if text else ''}{line}"


def check_asgi(app: Any, spec: str) -> None:
    """TargetError unless `app` is an ASGI application the probe can read routes from."""
    call = app if inspect.isfunction(app) else getattr(app, "__call__", None)  # noqa: B004
    if call is None or not callable(app):
        raise TargetError(f"{spec} is a {type(app).__name__}, not an ASGI app (nothing to call)")
    if not inspect.iscoroutinefunction(call):
        hint = " (is it a factory? add --factory)" if _takes_no_arguments(call) else ""
        raise TargetError(
            f"{spec} is a {type(app).__name__}, not an ASGI app: calling it is not a coroutine "
            f"(scope, receive, send){hint}"
        )
    try:
        params = inspect.signature(call).parameters
    except (TypeError, ValueError):
        return
    if len(params) != 3:
        raise TargetError(
            f"{spec} is not an ASGI app: its call takes {len(params)} arguments, not "
            "(scope, receive, send)"
        )
    if not hasattr(app, "routes") or not hasattr(app, "openapi"):
        raise TargetError(
            f"{spec} is an ASGI app but not a FastAPI one (no `routes` and `openapi()`): the "
            "probe reads FastAPI's routes and OpenAPI document"
        )


def _takes_no_arguments(call: Any) -> bool:
    try:
        return not inspect.signature(call).parameters
    except (TypeError, ValueError):
        return False
