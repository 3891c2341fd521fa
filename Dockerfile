# The session host: slim, non-root, exec-form entrypoint so SIGTERM reaches Python (drain + hand-over).
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY requirements.txt .
RUN python -m venv /venv && /venv/bin/pip install -r requirements.txt

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PATH=/venv/bin:$PATH PORT=8000
RUN useradd --create-home --uid 10001 app
COPY --from=build /venv /venv
WORKDIR /app
COPY callplane/ callplane/
COPY session_host/ session_host/
USER 10001
EXPOSE 8000
ENTRYPOINT ["python", "-m", "session_host"]
