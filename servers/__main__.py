"""Run one app: `python -m servers {sync,async,blocking,upstream} [--host H] [--port N]`."""

import argparse

import uvicorn

from servers.settings import get_settings

APPS = {
    "sync": "servers.sync_app:app",
    "async": "servers.async_app:app",
    "blocking": "servers.blocking_app:app",
    "upstream": "servers.upstream:app",
}


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve the chosen app (or print the settings)."""
    parser = argparse.ArgumentParser(prog="python -m servers", description=__doc__)
    parser.add_argument("app", choices=[*APPS, "settings"], help="'settings' prints LAB_* as JSON")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--access-log", action="store_true", help="off by default: it costs CPU")
    args = parser.parse_args(argv)
    if args.app == "settings":
        print(get_settings().model_dump_json(indent=2))
        return
    uvicorn.run(
        APPS[args.app],
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level=args.log_level,
        access_log=args.access_log,
    )


if __name__ == "__main__":
    main()
