"""A focal point set with PUT crops the image's thumbnail again around it."""

from __future__ import annotations

import pyvips
from starlette.testclient import TestClient

from blogimg.config import Settings
from blogimg.imaging.process import ImagingOptions, make_thumbnail
from blogimg.storage import MemoryStorage
from blogimg.testing import FakeProvider
from tests.support import AUTH, make_images


def mean_of_left_half(data: bytes) -> list[float]:
    image = pyvips.Image.new_from_buffer(data, "")
    return [image.extract_area(0, 0, image.width // 2, image.height).extract_band(band).avg() for band in range(3)]


def test_a_focal_point_recrops_the_thumbnail(client: TestClient, api_settings: Settings, storage: MemoryStorage) -> None:
    # The fake draws two colour blocks side by side (left half, right half) on a 3:2 image.
    batch = client.post("/api/images/generate", json={"prompts": [{"prompt": "two tones"}]}, headers=AUTH).json()
    make_images(api_settings, storage, FakeProvider("fake", image_size=(300, 100)))
    image_id = batch["image_ids"][0]
    before = client.get(f"/api/images/{image_id}").json()

    thumbnails = {}
    for x in (0.0, 1.0):
        answer = client.put(f"/api/images/{image_id}", headers=AUTH, json={"focal_point": {"x": x, "y": 0.5}})
        assert answer.status_code == 200, answer.text
        thumbnails[x] = answer.json()["thumbnail_url"].removeprefix("memory://")
    assert thumbnails[0.0] != thumbnails[1.0] != before["thumbnail_url"].removeprefix("memory://")
    master = storage.files[before["url"].removeprefix("memory://")]
    for x, key in thumbnails.items():  # each is the master cropped around its point, nothing else
        assert storage.files[key] == make_thumbnail(master, ImagingOptions.from_settings(api_settings), (x, 0.5)).data
    # Focused on the left edge, the thumbnail shows the left block; on the right edge, the right one.
    assert mean_of_left_half(storage.files[thumbnails[0.0]]) != mean_of_left_half(storage.files[thumbnails[1.0]])
