"""`steerctl key gen|derive|add|list|del`: the keys sealed ufrags are checked with
(docs/fleet.md has the rotation procedure). Relays hold the fleet's keys; each transceiver
gets only its backend's, derived from them (`derive`). Keys travel in files (mode 0600),
never on the command line."""

from __future__ import annotations

import json

import click

from pyctl.cli.params import call_api
from pyctl.cli.root import cli
from steer_common import seal
from steer_common.shared import BACKEND_ID_MAX, BACKEND_ID_MIN

KEY_ID = click.IntRange(0, 15)


@cli.group()
def key() -> None:
    """Sealed-ufrag keys: generate a key file, make it valid on this relay, list, retire."""


@key.command("gen")
@click.argument("key_id", type=KEY_ID)
@click.argument("path", type=click.Path(dir_okay=False))
def key_gen(key_id: int, path: str) -> None:
    """Write a new random key with id KEY_ID to PATH (created 0600; never overwritten)."""
    k = seal.new_key(key_id)
    try:
        seal.write_key_file(path, k)
    except FileExistsError:
        raise click.ClickException(f"{path} exists: a key file is never overwritten") from None
    click.echo(f"key {k.id} ({k.fingerprint()}) written to {path}")


@key.command("derive")
@click.argument("fleet_key", type=click.Path(exists=True, dir_okay=False))
@click.argument("backend", type=click.IntRange(BACKEND_ID_MIN, BACKEND_ID_MAX))
@click.argument("path", type=click.Path(dir_okay=False))
def key_derive(fleet_key: str, backend: int, path: str) -> None:
    """Write backend BACKEND's key, derived from the fleet key in FLEET_KEY, to PATH: the
    one key that backend's transceivers get (--seal-key-file). It mints ufrags, CIDs and
    transaction ids for that backend alone."""
    try:
        k = seal.backend_key(seal.read_key_file(fleet_key), backend)
        seal.write_key_file(path, k)
    except seal.KeyFileError as e:
        raise click.ClickException(str(e)) from None
    except FileExistsError:
        raise click.ClickException(f"{path} exists: a key file is never overwritten") from None
    click.echo(f"key {k.id} for backend {backend} ({k.fingerprint()}) written to {path}")


@key.command("add")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.pass_context
def key_add(ctx: click.Context, path: str) -> None:
    """Make the key in file PATH valid on this relay (at most two at once)."""
    try:
        k = seal.read_key_file(path)
    except seal.KeyFileError as e:
        raise click.ClickException(str(e)) from None
    ans = call_api(ctx, "request", "POST", "/v1/keys", k.to_json())
    click.echo(f"key {ans['id']} ({ans['fingerprint']}) valid")


@key.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def key_list(ctx: click.Context, as_json: bool) -> None:
    """The valid key ids and their fingerprints (never the keys)."""
    keys = call_api(ctx, "request", "GET", "/v1/keys")["keys"]
    if as_json:
        click.echo(json.dumps({"keys": keys}, indent=2))
        return
    click.echo(f"{'ID':>2}  FINGERPRINT")
    for k in keys:
        click.echo(f"{k['id']:>2}  {k['fingerprint']}")


@key.command("del")
@click.argument("key_id", type=KEY_ID)
@click.pass_context
def key_del(ctx: click.Context, key_id: int) -> None:
    """Retire key KEY_ID: ufrags sealed with it are dropped from now on."""
    call_api(ctx, "request", "DELETE", f"/v1/keys/{key_id}")
    click.echo(f"key {key_id} retired")
