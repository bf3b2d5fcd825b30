"""The event types a window digest counts apart: logins, commands, downloads, HTTP requests."""

from __future__ import annotations

# The parser's normalised vocabulary (`login_failed`, `command`, ...), plus the source-specific
# names (Cowrie event ids, sshd messages) in case a parser stores those.
SUCCESS_TYPES = (
    "login_success",
    "cowrie.login.success",
    "sshd.accepted_password",
    "sshd.accepted_publickey",
)
FAILURE_TYPES = (
    "login_failed",
    "invalid_user",
    "cowrie.login.failed",
    "sshd.failed_password",
    "sshd.invalid_user",
)
COMMAND_TYPES = ("command", "command_failed", "cowrie.command.input", "cowrie.command.failed")
DOWNLOAD_TYPES = (
    "download",
    "download_failed",
    "upload",
    "cowrie.session.file_download",
    "cowrie.session.file_download.failed",
    "cowrie.session.file_upload",
)
HTTP_TYPES = ("http_request", "http.access")
UNPARSED = "unparsed"
# Event types sampled first: the rarer and more telling, the earlier.
SAMPLE_PRIORITY = (*DOWNLOAD_TYPES, *SUCCESS_TYPES, *COMMAND_TYPES, UNPARSED, *HTTP_TYPES)
