"""`python -m custody`: serve the custody API."""

from custody.config import Settings
from custody.main import create_app
from shared.runtime import serve

if __name__ == "__main__":
    serve(create_app, Settings())  # type: ignore[arg-type]
