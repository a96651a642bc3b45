"""`/up`: open health check; 200 only when the database answers."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, current_app, jsonify

from shared import db

bp = Blueprint("health", __name__)


def _engine() -> sa.engine.Engine:
    ext = current_app.extensions
    if "bench_health_engine" not in ext:
        ext["bench_health_engine"] = db.make_engine(
            current_app.config["SETTINGS"].database_url,
            role="web-health",
            pool_size=1,
            connect_args={"connect_timeout": 2},
        )
    return ext["bench_health_engine"]


@bp.get("/up")
def up():
    try:
        with _engine().connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError:
        return jsonify(status="down", database="unreachable"), 503
    return jsonify(status="up", database="ok"), 200
