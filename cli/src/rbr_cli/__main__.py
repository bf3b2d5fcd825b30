"""`python -m rbr_cli` is `rbr`."""

from rbr_cli.entry import main

main()
