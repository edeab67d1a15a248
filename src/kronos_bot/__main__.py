import sys

from kronos_bot.cli import main

sys.exit(main())
