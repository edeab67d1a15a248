"""Sub-commands of `kronos-bot`: one module each, registered in `kronos_bot.cli.COMMAND_MODULES`.

A command module defines NAME, HELP, `add_arguments(parser)` and `main(args, settings) -> int`. Module
import must stay cheap and torch-free; heavy imports happen inside `main`.
"""
