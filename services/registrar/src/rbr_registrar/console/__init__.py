"""The operator console: accounts, sessions and the server-rendered pages under /console/."""
