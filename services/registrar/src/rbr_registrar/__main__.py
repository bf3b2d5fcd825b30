"""`python -m rbr_registrar` runs the registrar."""

from rbr_registrar.main import main

main()
