"""The WSGI entry point for Gunicorn: `popcorn.wsgi:app`."""

from popcorn.app import create_app

app = create_app()
