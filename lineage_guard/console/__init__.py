"""The web console: approvals inbox, who-saw-what timeline, receipts, per-column views (Starlette + Jinja2).

Served by `lineage-guard console` over the same ledger and approval stores the CLI uses, or by
`lineage-guard serve --console-port N` beside the governed reader. People sign in with OpenID
Connect (authorization code + PKCE); the policy's `console:` section maps the verified subject to
an identity and roles. This package's `__init__` stays import-light: the policy model imports
`console.config`, and the web stack loads only when a console is built (`app.build_app`).
"""
