"""`python -m registry`: serve the registry API."""

from registry.config import Settings
from registry.main import create_app
from shared.runtime import serve

if __name__ == "__main__":
    serve(create_app, Settings())  # type: ignore[arg-type]
