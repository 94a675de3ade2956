# syntax=docker/dockerfile:1
# Two images from one file, neither with torch:
#   docker build --target service -t mess-service .   (FastAPI server, PostgreSQL/SQLite, S3/local blobs)
#   docker build --target agent   -t mess-agent .     (on-device profiler: onnxruntime + httpx)

FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --create-home --uid 10001 mess

FROM base AS build-service
WORKDIR /src
COPY pyproject.toml README.md alembic.ini ./
COPY mess mess
# service/ holds the dashboard's templates and static files, installed as package data
COPY service service
COPY profilers profilers
COPY migrations migrations
RUN python -m venv /opt/venv && /opt/venv/bin/pip install '.[service]'

FROM base AS build-agent
WORKDIR /src
COPY pyproject.toml README.md ./
COPY mess mess
COPY profilers profilers
# the core and the agent only: no service code, no numba, torch or matplotlib
RUN python -m venv /opt/venv && /opt/venv/bin/pip install '.[agent]'

FROM base AS service
COPY --from=build-service /opt/venv /opt/venv
COPY --chown=mess:mess alembic.ini /app/alembic.ini
COPY --chown=mess:mess migrations /app/migrations
WORKDIR /app
RUN mkdir -p /data && chown mess:mess /data
ENV PATH=/opt/venv/bin:$PATH MESS_DATA_DIR=/data
USER mess
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/healthz')" || exit 1
CMD ["mess", "serve", "--host", "0.0.0.0", "--port", "8000"]

FROM base AS agent
COPY --from=build-agent /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
USER mess
WORKDIR /home/mess
ENTRYPOINT ["mess-agent"]
