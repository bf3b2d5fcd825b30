"""The operator API: read queries, operator actions, audit log and who is calling."""
