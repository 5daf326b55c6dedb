"""The ``callqa`` command line: the ``main`` group; its commands live in modules by audience."""

import logging

import click

from .common import Unreachable, UserError


def _usage_error(exc: click.UsageError) -> UserError:
    """click's usage error (usage, a hint and the error: three lines) as one line that says where to look."""
    where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
    return UserError(f"{exc.format_message()}{where}")


class _Group(click.Group):
    """The ``callqa`` group: an option or argument click refuses is one line (exit 2), like every other
    error a user can fix; a store that stops answering while a command runs is exit 3, not a traceback."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise _usage_error(exc) from None

    def invoke(self, ctx):
        from sinks.store import StoreUnreachable

        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise _usage_error(exc) from None
        except StoreUnreachable as exc:
            raise Unreachable(f"{exc}. Check CLICKHOUSE_URL and that the server is up.") from None


@click.group(cls=_Group)
@click.option("-v", "--verbose", is_flag=True, help="Log at INFO level.")
@click.option("-q", "--quiet", is_flag=True,
              help="Results only: no progress bars, no table borders or titles (tables as tab-separated lines).")
def main(verbose: bool, quiet: bool) -> None:
    """callqa: contact-center quality monitoring on Kafka and ClickHouse.

    Exit codes: 0 done; 2 a problem with the input, an option or a setting (the message says what to change);
    3 Kafka or ClickHouse unreachable; 1 a bug (please report it with the traceback).
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not verbose:  # the driver logs each failed connect with a traceback; our error says it in one line
        logging.getLogger("clickhouse_driver").setLevel(logging.CRITICAL)


from . import demo, inputs, operate, qa  # noqa: F401 - each registers its commands on main
