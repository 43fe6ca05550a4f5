"""`serve` (the HTTP API on Uvicorn) and `api-key create|list|revoke` (the keys its writes need)."""

from __future__ import annotations

import argparse
import json

from cli.common import CommandError, bounded_int, open_engine
from core.runtime.terminal import printable


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app

    app = create_app(engine=open_engine(args.db))
    print(f"serving the API on http://{args.host}:{args.port} (interactive docs at /docs); Ctrl-C stops it")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning" if args.quiet else "info", timeout_graceful_shutdown=10)
    return 0


def run_api_key(args: argparse.Namespace) -> int:
    from services.api_keys import ApiKeyError, create_api_key, list_api_keys, revoke_api_key

    engine = open_engine(args.db)
    try:
        if args.action == "create":
            secret = create_api_key(engine, args.name or "")
            print(secret)
            print(printable(f"the key for {args.name!r} is shown only now: keep it; only its hash is stored"), flush=True)
        elif args.action == "revoke":
            revoke_api_key(engine, args.name or "")
            print(printable(f"revoked the key of {args.name!r}"))
        else:
            listed = list_api_keys(engine)
            if args.json:
                print(json.dumps({"keys": [info.as_json() for info in listed]}, ensure_ascii=False))
            for info in [] if args.json else listed:
                state = f"revoked {info.revoked_at:%Y-%m-%d %H:%M}" if info.revoked_at else "live"
                print(printable(f"{info.name}  {info.prefix}…  made {info.created_at:%Y-%m-%d %H:%M}  {state}"))
    except ApiKeyError as error:
        raise CommandError(str(error)) from error
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """The `serve` and `api-key` subcommands."""
    serve = commands.add_parser("serve", help="serve the HTTP API (FastAPI on Uvicorn; interactive docs at /docs)")
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=bounded_int(1, 65_535), default=8080)
    serve.add_argument("--quiet", action="store_true", help="log warnings only")
    serve.add_argument("--db", help="database URL")
    serve.set_defaults(handler=run_serve)

    keys = commands.add_parser("api-key", help="make, list and revoke the keys the HTTP API's writes need")
    keys.add_argument("action", choices=["create", "list", "revoke"])
    keys.add_argument("name", nargs="?", help="who holds the key (create, revoke): recorded with every change they make")
    keys.add_argument(
        "--json", action="store_true", help='list: print {"keys": [{"name", "prefix", "created_at", "revoked_at", "last_used_at"}]}'
    )
    keys.add_argument("--db", help="database URL")
    keys.set_defaults(handler=run_api_key)
