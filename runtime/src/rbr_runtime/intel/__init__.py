"""Threat intelligence shared by the analyst (which records it) and the exports (which read it).

`attack`: the MITRE ATT&CK technique list technique ids are validated against. `indicators`:
indicator kinds, normalisation (defanged forms undone, URL parts split) and stable ids.
`export`: the `iocs` table streamed as STIX 2.1, MISP, CSV or an IP blocklist.
"""
