"""`python -m rbr_parser`: runs the parser service."""

from rbr_parser.main import main

main()
