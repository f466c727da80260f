"""`python -m audit`: serve the audit API."""

from audit.config import Settings
from audit.main import create_app
from shared.runtime import serve

if __name__ == "__main__":
    serve(create_app, Settings())  # type: ignore[arg-type]
