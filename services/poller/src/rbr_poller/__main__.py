"""`python -m rbr_poller` runs a poller replica."""

from rbr_poller.main import main

main()
