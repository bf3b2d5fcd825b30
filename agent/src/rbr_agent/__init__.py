"""rbr-agent: serves a honeypot's log files to the Rustbucket Registry over pinned HTTPS."""

__version__ = "0.1.0"
