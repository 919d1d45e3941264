# migration-kit with the example app, for docker-compose's worker.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY migration_errors migration_errors
COPY legacy_bus legacy_bus
COPY graph_flows graph_flows
COPY checkpoints checkpoints
COPY migration_kit migration_kit
COPY examples examples
RUN pip install --no-cache-dir '.[otlp]'
USER nobody
ENTRYPOINT ["migration-kit"]
