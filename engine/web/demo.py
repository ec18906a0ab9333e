"""Demo step: console users for the demo's agents and for the floor, and how to open the
console. Each gets a generated first password (hashed like any user's: engine/web/users.py),
printed once in the demo's report and stored nowhere else."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from sqlalchemy import select

from engine.db.models import Agent
from engine.web.users import add_user

if TYPE_CHECKING:
    from engine.demo.run import DemoContext

# Who watches the floor in the demo (the manager is the demo's manager agent row).
FLOOR_USERS = (
    ("sam.taylor", "supervisor"),
    ("maria.rossi", "manager"),
    ("cora.diaz", "coordinator"),
)
SECTION = "The console in the browser (first sign-in passwords, shown only now)"


def add_console_users(ctx: DemoContext) -> None:
    app = ctx.require_app()
    made: list[tuple[str, str, str]] = []  # (login, role, password)
    with app.sessions() as session, session.begin():
        agents = session.scalars(
            select(Agent.login).where(Agent.role == "agent", Agent.active).order_by(Agent.login)
        ).all()
        for login, role in [*((a, "agent") for a in agents), *FLOOR_USERS]:
            user, password = add_user(session, login, role=role, at=ctx.now, actor="demo")
            assert password is not None  # generated: none was given
            made.append((user.login, user.role, password))
    url = app.settings.public_url.rstrip("/")
    rows = [
        ("serve", f"cd {shlex.quote(str(ctx.folder))} && campaign serve"),
        ("then open", f"{url}/login (agents land on /agent, the others on /floor)"),
    ]
    rows += [(login, f"{role}, first password: {password}") for login, role, password in made]
    rows.append(("", "New passwords: `campaign users reset-password LOGIN` (in the demo folder)."))
    ctx.sections.append((SECTION, rows))
