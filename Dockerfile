# One image for every role: shim, worker, beat, flower and the demo simulator.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md celeryconfig.py ./
COPY worker ./worker
COPY tasks ./tasks
COPY api_shim ./api_shim
COPY simulator ./simulator
COPY callrail_sync ./callrail_sync
RUN pip install . && useradd --create-home --uid 10001 app
USER app
EXPOSE 8000
CMD ["uvicorn", "--factory", "api_shim.app:create_app", "--http", "api_shim.wire:EnvelopeH11Protocol", "--host", "0.0.0.0", "--port", "8000"]
