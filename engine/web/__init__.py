"""The browser console: the agent's call screen, sign-in, users and roles (issue #19).

Server-rendered (Jinja2) over the same engine functions as cli.py; mounted into `campaign
serve` by engine/webhooks/app.py. One module per concern: ``users`` (accounts, passwords),
``audit`` (the audit table and the sign-in rate limit), ``sessions`` (signed cookies, CSRF),
``auth`` (sign-in pages, who is asking), ``forms`` (the disposition form from its template),
``pages`` (the agent's pages), ``floor`` (the supervisor's wallboard), ``app`` (routes)."""
