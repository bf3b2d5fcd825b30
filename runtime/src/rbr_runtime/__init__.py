"""The shared service runtime of the Rustbucket Registry.

Settings, structured logs, health and metrics, the Kafka plumbing (producer, consumer runner,
topics, partition ownership), the database (engine, tables, migrations), S3 clients, token
encryption and scheduling: everything the six services share, written once.
"""
