"""`python -m rbr_cli` is `rbr`."""

from rbr_cli.main import main

main()
