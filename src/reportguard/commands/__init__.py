"""The `reportguard` commands: one module per command (or group), each with `register(subparsers)`.

A command module builds its parser and names a handler; the handler imports what it needs
(torch, onnxruntime, FastAPI, ...) when it runs, so building the parser, `reportguard --help` and
any command of an extra that is installed work on an install with one extra only. Conventions
every command follows (tests/test_cli.py checks them on the whole parser):

- a description and at least one example in its `--help` (`command()` below);
- `--output` for whatever it writes, the older spellings (`--out`, `--out-dir`, `--folder`) kept as
  hidden aliases (`add_output`, and `adopt_output_flags` for parsers built elsewhere);
- default paths under the project home (core/paths.py), never the installed package;
- the project's own errors (core/errors.py) for anything a person can fix; the CLI prints them
  on one line (exit 1 for bad data or a refused input, 2 for usage).
"""
from __future__ import annotations

import argparse
import copy
import importlib

#: The command modules, in the order `reportguard --help` lists them.
MODULES: tuple[str, ...] = ("data", "baselines", "backbone", "train", "distill", "bench", "score", "predict", "sellers", "report",
                            "review", "normalize")
#: Older spellings of --output, accepted everywhere and shown nowhere.
OLD_OUTPUT_FLAGS: tuple[str, ...] = ("--out", "--out-dir")


def register_all(subparsers) -> None:
    for name in MODULES:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)


class _HideAliases:
    """Leaves an action's hidden aliases (`action.hidden_aliases`) out of the help text."""

    def _format_action_invocation(self, action):
        hidden = getattr(action, "hidden_aliases", ())
        if hidden:
            action = copy.copy(action)
            action.option_strings = [s for s in action.option_strings if s not in hidden]
        return super()._format_action_invocation(action)


class Formatter(_HideAliases, argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples as written (line breaks kept); hidden aliases left out."""


_FORMATTERS: dict[type, type] = {}


def _hiding(formatter_class: type) -> type:
    if issubclass(formatter_class, _HideAliases):
        return formatter_class
    if formatter_class not in _FORMATTERS:
        _FORMATTERS[formatter_class] = type(f"Hiding{formatter_class.__name__}", (_HideAliases, formatter_class), {})
    return _FORMATTERS[formatter_class]


def examples_text(examples: list[str]) -> str:
    return ("examples:\n" if len(examples) > 1 else "example:\n") + "\n".join(f"  {e}" for e in examples)


def command(subparsers, name: str, *, help: str, description: str, examples: list[str], **kwargs) -> argparse.ArgumentParser:
    """A subcommand with its one-line help (in the parent's list), a description and examples."""
    return subparsers.add_parser(name, help=help, description=description, epilog=examples_text(examples),
                                 formatter_class=Formatter, **kwargs)


def describe(parser: argparse.ArgumentParser, description: str | None, examples: list[str]) -> argparse.ArgumentParser:
    """Give a parser built elsewhere (review, sellers) a description and examples."""
    if description and not parser.description:
        parser.description = description
    parser.epilog = examples_text(examples) + (f"\n\n{parser.epilog}" if parser.epilog else "")
    parser.formatter_class = _hiding(argparse.RawDescriptionHelpFormatter)
    return parser


def add_output(parser: argparse.ArgumentParser, *, old: tuple[str, ...] = ("--out",), **kwargs) -> argparse.Action:
    """`--output`, with the `old` spellings accepted as hidden aliases (not in --help)."""
    action = parser.add_argument("--output", *old, **kwargs)
    action.hidden_aliases = frozenset(old)
    return action


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """A parser's subcommand parsers by name (aliases excluded)."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            names = [choice.dest for choice in action._choices_actions]
            found.update({name: action.choices[name] for name in names})
    return found


def adopt_output_flags(parser: argparse.ArgumentParser) -> None:
    """In `parser` and every subcommand under it: an option spelled `--out` or `--out-dir` becomes
    `--output`, the old spelling staying as a hidden alias (for parsers built by other modules)."""
    for action in parser._actions:
        old = [s for s in action.option_strings if s in OLD_OUTPUT_FLAGS]
        if old and "--output" not in parser._option_string_actions:
            action.option_strings = ["--output", *action.option_strings]
            parser._option_string_actions["--output"] = action
            action.hidden_aliases = frozenset(old) | getattr(action, "hidden_aliases", frozenset())
            parser.formatter_class = _hiding(parser.formatter_class)
    for child in subcommands(parser).values():
        adopt_output_flags(child)
