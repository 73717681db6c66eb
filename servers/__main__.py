"""Run one app: `python -m servers {sync,async,blocking,upstream} [--server NAME] [--host H]
[--port N]`; the app may also be any ASGI app's import string, `module:attr`."""

import argparse

from contract import DEFAULT_SERVER, SERVERS
from servers.launch import Launch, serve
from servers.settings import get_settings

APPS = {
    "sync": "servers.sync_app:app",
    "async": "servers.async_app:app",
    "blocking": "servers.blocking_app:app",
    "upstream": "servers.upstream:app",
}


def app_target(name: str) -> str:
    """A lab app's import string, or `module:attr` as given (argparse type)."""
    if name in APPS or name == "settings":
        return name
    module, _, attr = name.partition(":")
    if not module or not attr:
        raise argparse.ArgumentTypeError(
            f"{name!r}: choose from {[*APPS, 'settings']} or give an import string module:attr"
        )
    return name


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve the chosen app (or print the settings)."""
    parser = argparse.ArgumentParser(prog="python -m servers", description=__doc__)
    parser.add_argument(
        "app",
        type=app_target,
        help=f"{', '.join(APPS)}, or module:attr; 'settings' prints LAB_* as JSON",
    )
    # A flag, not a LAB_ setting: the server runs the app, the app does not choose its server.
    parser.add_argument(
        "--server",
        choices=SERVERS,
        default=DEFAULT_SERVER,
        help=f"the ASGI server (servers/launch.py; default {DEFAULT_SERVER})",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--access-log", action="store_true", help="off by default: it costs CPU")
    args = parser.parse_args(argv)
    if args.app == "settings":
        print(get_settings().model_dump_json(indent=2))
        return
    launch = Launch(
        APPS.get(args.app, args.app),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.access_log,
    )
    serve(launch, args.server)


if __name__ == "__main__":
    main()
