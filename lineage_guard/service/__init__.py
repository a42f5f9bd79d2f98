"""`lineage-guard serve`: the governed reader behind an Arrow Flight SQL endpoint.

The service is a second home of the same path, not a second path: every call is authenticated
(`auth`), mapped to a declared identity and a requested purpose, and then runs through one
`GovernedSession` (steps 1-10) exactly as in embedded mode; only the transport differs. This
package's `__init__` and `config` import nothing heavy (the policy model imports `config`).
"""
