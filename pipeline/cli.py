"""`sam3-pipeline`: the project's command line.

The last line a command prints on stdout is its result (a URI or a path);
progress and logs go to stderr. Exit codes: 0 done, 1 error, 2 bad usage or
configuration, 3 a gate stopped promotion. Heavy imports stay inside the
commands so that `--help` and quick commands start fast.
"""

from __future__ import annotations

import logging
import os
import sys

import typer

from components.errors import Sam3Error
from pipeline.commands import ablate, data, evaluate, models, pipeline, predict, run, store, train

app = typer.Typer(
    name="sam3-pipeline",
    help="Train SAM 3-style concept segmentation models: data, training, evaluation, registry.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(store.app, name="store")
app.add_typer(data.app, name="data")
app.add_typer(models.app, name="models")
app.command("evaluate")(evaluate.evaluate)
app.command("run")(run.run)
app.command("ablate")(ablate.ablate)
app.command("train")(train.train)
app.command("predict")(predict.predict)
app.command("compile")(pipeline.compile_cmd)
app.command("submit")(pipeline.submit_cmd)


def _configure_logging() -> None:
    level = os.environ.get("SAM3_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main() -> None:
    """Console-script entry point: one clear line and an exit code on known errors."""
    _configure_logging()
    try:
        code = app(standalone_mode=False)  # a command's typer.Exit(code) comes back as its return value
        if isinstance(code, int) and code:
            sys.exit(code)
    except Sam3Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors carry their own exit code
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
