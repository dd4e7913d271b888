"""The HTTP API: a Starlette app served by Uvicorn workers under Gunicorn."""
