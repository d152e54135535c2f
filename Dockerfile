# The stateless gateway. State lives in PostgreSQL and Redis (see docker-compose.yml, deploy/k8s/).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gatewayz ./gatewayz
RUN pip install --no-cache-dir --prefix=/install ".[otel,sentry]"

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 gatewayz
COPY --from=build /install /usr/local
USER gatewayz
WORKDIR /home/gatewayz
ENV GATEWAYZ_DATA_DIR=/home/gatewayz/data
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=2s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health/quick').status != 200)"
# Migrates (under an advisory lock, safe with many replicas), then serves. Workers: one per core.
CMD ["gatewayz", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
