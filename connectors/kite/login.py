"""``python -m connectors.kite.login --request-token T``: exchange the request token of a Kite
login redirect for an access token.

The API key and secret come from ``KITE_API_KEY`` / ``KITE_API_SECRET``. The access token is
written to an env file readable by its owner only (default ``.env.kite``), never printed:
load it with ``set -a; . .env.kite; set +a`` before starting the flow.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex

from connectors.kite.client import CredentialsMissing, env_credentials
from flows.config import load_config
from schemas.config import ConfigError
from schemas.kite import ACCESS_TOKEN_ENV, API_KEY_ENV, API_SECRET_ENV


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m connectors.kite.login", description=__doc__)
    ap.add_argument("--request-token", required=True, help="from the login redirect URL")
    ap.add_argument("--env-file", type=Path, default=Path(".env.kite"))
    ap.add_argument("--config", help="config file (its kite.api_root); default as the flow")
    ap.add_argument("--root", help="Kite API base URL, overriding the config")
    args = ap.parse_args(argv)
    try:
        api_key, api_secret = env_credentials(API_KEY_ENV, API_SECRET_ENV)
    except CredentialsMissing as e:
        print(f"login: {e}", file=sys.stderr)
        return 2
    try:
        root = args.root or load_config(args.config).kite.api_root
    except ConfigError as e:
        print(f"login: configuration error: {e}", file=sys.stderr)
        return 2
    kite = KiteConnect(api_key, root=root)
    try:
        session = kite.generate_session(args.request_token, api_secret)
    except (kex.KiteException, OSError) as e:
        print(f"login: Kite refused the request token: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    fd = os.open(args.env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{ACCESS_TOKEN_ENV}={session['access_token']}\n")
    print(
        f"login: access token for {session.get('user_id', '?')} written to {args.env_file} "
        f"(owner-only); load it with: set -a; . {args.env_file}; set +a"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
