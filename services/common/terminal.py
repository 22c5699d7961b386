"""What every `tongyuan` command shares at the terminal: its Typer apps, the settings, and what
is wrong said in one line (bad configuration, no broker), never as a traceback.

A bug still shows its traceback: only the mistakes a user can fix are turned into a line.
"""

from __future__ import annotations

from typing import Any, NoReturn

import typer
from pydantic import ValidationError
from typer.core import TyperGroup

from .logging import configure_logging
from .settings import Settings, get_settings
from .stack_state import NoBroker

# Which variables a settings model reads (pydantic names the model in a ValidationError).
ENV_PREFIXES = {"Settings": "TONGYUAN_", "BridgeSettings": "TONGYUAN_BRIDGE_"}


def configuration_problem(exc: ValidationError) -> str:
    """One line naming each bad variable and what is wrong with it."""
    prefix = ENV_PREFIXES.get(exc.title, "TONGYUAN_")
    problems = [f"{prefix}{'_'.join(str(part) for part in error['loc']).upper() or '?'}: {error['msg']}" for error in exc.errors(include_url=False)]
    return "bad configuration: " + "; ".join(problems)


def one_line(exc: BaseException) -> str | None:
    """What to tell the user about `exc` in one line, or None: a bug, shown as one."""
    if isinstance(exc, ValidationError) and exc.title in ENV_PREFIXES:
        return configuration_problem(exc)
    if isinstance(exc, NoBroker):
        return str(exc)
    return None


class OneLineErrors(TyperGroup):
    """A command group that turns the user's mistakes into one line on stderr and exit 2."""

    def invoke(self, ctx: Any) -> Any:  # typer.core.TyperGroup types it with its vendored click
        try:
            return super().invoke(ctx)
        except (ValidationError, NoBroker) as exc:
            message = one_line(exc)
            if message is None:
                raise
            typer.echo(message, err=True)
            raise typer.Exit(2) from None


def commands(help: str | None = None, **options: Any) -> typer.Typer:
    """A Typer app as every `tongyuan` command group is made: plain help text (no `<bool>`
    metavars, paragraphs reflowed to the terminal) and one-line errors."""
    return typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None, pretty_exceptions_enable=False, cls=OneLineErrors, **options)


def load_settings() -> Settings:
    """This process's settings, with logging configured from them."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    return settings


def broker(settings: Settings) -> str:
    """The bootstrap servers of a broker that answers now (NoBroker, one line, if none does)."""
    from .kafka import broker_reachable

    bootstrap = settings.bootstrap
    if not broker_reachable(bootstrap):
        raise NoBroker(f"no Kafka broker answers at {bootstrap} (is the stack running? `tongyuan up` starts it)")
    return bootstrap


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)
