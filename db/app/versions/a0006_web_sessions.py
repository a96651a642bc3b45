"""web.sessions: login sessions held by the server, so that logging out ends them

Revision ID: a0006
Revises: a0005
Create Date: 2026-12-02

The pages' session cookie was only signed: a copied cookie stayed valid for its 12 hours after its user
logged out. A session now exists while its row does. The cookie carries a random token; the row holds
its SHA-256 (a read of the table yields no usable cookie), the user, a keyed digest of the credentials
the session was opened with (a changed ADMIN_PASSWORD or SECRET_KEY ends it), and the times that bound
it: created_at for the absolute lifetime, last_seen_at for the idle timeout (docs/web.md, "Sessions").

The table lives in its own schema, `web`, the web service's private state: the app models
(shared/models.py) describe the benchmark's tables in `public`, and the web's one table is declared
beside the code that uses it (services/web/web/sessions.py), whose test compares the two.
"""

from __future__ import annotations

from alembic import op

revision = "a0006"
down_revision = "a0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE SCHEMA web;
        CREATE TABLE web.sessions (
            id           text PRIMARY KEY,
            user_name    text NOT NULL,
            credentials  text NOT NULL,
            created_at   timestamptz NOT NULL DEFAULT now(),
            last_seen_at timestamptz NOT NULL DEFAULT now()
        );
        COMMENT ON TABLE web.sessions IS 'login sessions of the admin pages (docs/web.md, "Sessions")';
        COMMENT ON COLUMN web.sessions.id IS 'SHA-256 (hex) of the token the session cookie carries';
        COMMENT ON COLUMN web.sessions.credentials IS 'HMAC of the credentials it was opened with';
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE web.sessions; DROP SCHEMA web;")
