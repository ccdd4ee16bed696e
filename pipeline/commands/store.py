"""`sam3-pipeline store up|down|env`: the embedded S3 server on loopback."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="The embedded object store (SeaweedFS on 127.0.0.1 under $SAM3_HOME).", no_args_is_help=True
)


@app.command()
def up() -> None:
    """Start the store if it is not running; print `export SAM3_S3_...=...` lines (use with eval)."""
    from components.embedded_store import EmbeddedStore

    store = EmbeddedStore()
    settings = store.up()
    typer.echo(f"object store up at {settings.endpoint} (data in {store.data_dir})", err=True)
    for line in settings.env_lines():
        typer.echo(line)


@app.command()
def down() -> None:
    """Stop the store started by `store up` (by its recorded pid); its data stays."""
    from components.embedded_store import EmbeddedStore

    stopped = EmbeddedStore().down()
    typer.echo("object store stopped" if stopped else "object store was not running", err=True)


@app.command()
def env() -> None:
    """Print the `export` lines of the running store (exit 1 if it is not running)."""
    from components.embedded_store import EmbeddedStore
    from components.errors import StorageError

    state = EmbeddedStore().running()
    if state is None:
        raise StorageError("the embedded object store is not running: run `sam3-pipeline store up`")
    for line in state.settings().env_lines():
        typer.echo(line)
