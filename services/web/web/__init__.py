"""The web service: Flask app factory, blueprints, templates and the gunicorn entry point."""
