"""Locust users for benchmarks/serve_load.py: each posts a photo to ``/predict`` and sends the next as soon as the
answer is back (a closed loop: N users = N requests in flight). The photos come from $DEPTHFORGE_LOAD_IMAGES (a
folder; the first $DEPTHFORGE_LOAD_N files in name order)."""

from __future__ import annotations

import os
import random
from pathlib import Path

from locust import HttpUser, constant, task

FILES = sorted(p for p in Path(os.environ["DEPTHFORGE_LOAD_IMAGES"]).iterdir()
               if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[:int(os.environ.get("DEPTHFORGE_LOAD_N", "64"))]
IMAGES = [(p.name, p.read_bytes()) for p in FILES]


class DepthUser(HttpUser):
    wait_time = constant(0)

    @task
    def predict(self) -> None:
        name, data = random.choice(IMAGES)
        with self.client.post("/predict", files={"image": (name, data, "image/png")}, name="/predict",
                              catch_response=True) as answer:
            if answer.status_code != 200:
                answer.failure(f"HTTP {answer.status_code}: {answer.text[:100]}")
