"""The one exception family the library raises; the CLI turns it into a one-line message."""

from __future__ import annotations


class TestbedError(Exception):
    """Base for every error meant for the user. ``exit_code`` is what the CLI exits with."""

    __test__ = False  # not a pytest test class, despite the name
    exit_code = 1


class ConfigError(TestbedError):
    """Bad input: a topology, scenario or option. Nothing has been created."""

    exit_code = 2

    def __init__(self, source: str, field: str, problem: str, fix: str | None = None) -> None:
        self.source, self.field, self.problem, self.fix = source, field, problem, fix
        msg = f"{source}: {field}: {problem}"
        if fix:
            msg += f" ({fix})"
        super().__init__(msg)


class MissingDependency(TestbedError):
    """A binary or package the lab needs is absent; the message names what to install."""

    exit_code = 3

    def __init__(self, what: str, package: str) -> None:
        super().__init__(f"{what} not found: install the Debian package '{package}' (run `make setup`)")


class LabStateError(TestbedError):
    """The lab is not in the state the command needs (already up, not up, locked)."""


class ServiceError(TestbedError):
    """A daemon did not start or did not answer; the message carries the tail of its log."""


class CommandError(TestbedError):
    """A command run on behalf of the lab failed."""

    def __init__(self, argv: list[str], returncode: int, output: str) -> None:
        self.argv, self.returncode, self.output = argv, returncode, output
        tail = output.strip().splitlines()[-3:] if output else []
        super().__init__(f"`{' '.join(argv)}` exited {returncode}: " + " | ".join(tail))
