"""Sub-commands of `kronos-bot`: one module each, registered in `kronos_bot.cli.COMMAND_MODULES`.

A command module defines NAME, HELP, EXAMPLE (the one-line example ending its --help), `add_arguments(parser)`
and `main(args, settings) -> int`. Module import must stay cheap and torch-free; heavy imports happen inside
`main`. Known failures are raised, not printed: `failures` turns them into one line and an exit code.
The helper modules here (`failures`, `journal_reader`, `trader_start`) are not commands.
"""
