"""`python -m rbr_log_extractor`: runs the log-extractor service."""

from rbr_log_extractor.main import main

main()
