"""The cold-start baseline: the smallest honest Mangum + FastAPI function, one /health route."""

from typing import Any

from fastapi import FastAPI
from mangum import Mangum

app = FastAPI()


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


lambda_handler: Any = Mangum(app, lifespan="off")
