"""`python -m rbr_notifier` runs the notifier."""

from rbr_notifier.main import main

main()
