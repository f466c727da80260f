# One image for the three services (the command picks the service): see docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# The run-time dependencies only (no test, lint or benchmark tools: those are in requirements-dev.lock).
COPY requirements.lock ./
RUN pip install -r requirements.lock

COPY pyproject.toml LICENSE ./
COPY shared ./shared
COPY services ./services
COPY deploy/docker/entrypoint.sh ./deploy/docker/entrypoint.sh
RUN pip install --no-deps . && useradd --system --uid 10001 app
USER app

ENTRYPOINT ["/app/deploy/docker/entrypoint.sh"]
CMD ["custody"]
