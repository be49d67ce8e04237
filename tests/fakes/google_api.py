"""A fake of the Gemini API's generateContent (and Vertex's Imagen predict), as documented, on loopback.

Error bodies follow Google's shape ``{"error": {"code", "message", "status", "details"}}`` with
``google.rpc.QuotaFailure`` / ``RetryInfo`` / ``ErrorInfo`` details. A request without the
expected ``x-goog-api-key`` gets the API's 400 API_KEY_INVALID.

Image requests are numbered from 1 in order of arrival (under the server's lock, so concurrent
requests never share a number); ``script(prompt, number)`` picks each answer.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable

from tests.fakes.images import png_for
from tests.fakes.server import LoopbackServer, Received, Reply

API_KEY = "gemini-test-blogimg-fake"
Script = Callable[[str, int], str]
_GENERATE = re.compile(r"^/v1(?:beta)?/models/([^/:]+):generateContent$")
_PREDICT = re.compile(r"/models/([^/:]+):predict$")
USAGE = {"promptTokenCount": 12, "candidatesTokenCount": 1290, "totalTokenCount": 1302,
         "candidatesTokensDetails": [{"modality": "IMAGE", "tokenCount": 1290}]}


def _error(code: int, status: str, message: str, details: list | None = None) -> Reply:
    return Reply(code, {"error": {"code": code, "message": message, "status": status, "details": details or []}})


def _quota_details(quota_id: str, retry: str | None, limit: str = "10") -> list:
    details: list = [{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
        {"quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
         "quotaId": quota_id, "quotaDimensions": {"model": "gemini-2.5-flash-image"}, "quotaValue": limit}]}]
    if retry:
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry})
    return details


class FakeGemini(LoopbackServer):
    def __init__(self, script: Script = lambda prompt, number: "ok") -> None:
        super().__init__(self._answer)
        self.script = script
        self.generations = 0
        self.behaviours: list[str] = []
        self.captions: list[list] = []
        self.caption_text = "A red lighthouse on a rocky shore under an orange evening sky."

    def _answer(self, request: Received) -> Reply:
        path = request.path.split("?", 1)[0]
        generate, predict = _GENERATE.match(path), _PREDICT.search(path)
        if request.method != "POST" or not (generate or predict):
            return _error(404, "NOT_FOUND", f"Requested entity was not found: {path}")
        with self._lock:
            self.generations += 1
            number = self.generations
        if request.headers.get("x-goog-api-key") != API_KEY:
            return _error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                 "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}])
        body = request.json()
        if predict:
            prompt = body["instances"][0]["prompt"]
        elif body.get("generationConfig", {}).get("responseModalities") == ["TEXT"]:
            return self._caption(body)
        else:
            prompt = body["contents"][0]["parts"][0]["text"]
        behaviour = self.script(prompt, number)
        self.behaviours.append(behaviour)
        return self._predict(behaviour, prompt) if predict else self._generate(behaviour, prompt, generate.group(1))

    def _generate(self, behaviour: str, prompt: str, model: str) -> Reply:
        image_part = {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(png_for(prompt)).decode()}}
        answers: dict[str, Callable[[], Reply]] = {
            "ok": lambda: Reply(200, {"candidates": [{"content": {"parts": [image_part], "role": "model"},
                                                      "finishReason": "STOP", "index": 0}],
                                      "usageMetadata": USAGE, "modelVersion": model}),
            "blocked": lambda: Reply(200, {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
                                           "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12},
                                           "modelVersion": model}),
            "image_safety": lambda: Reply(200, {"candidates": [{"content": {"parts": [
                {"text": "I can't generate that image."}], "role": "model"}, "finishReason": "IMAGE_SAFETY",
                "index": 0}], "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12}, "modelVersion": model}),
            "no_image": lambda: Reply(200, {"candidates": [{"content": {"parts": [{"text": "Here is a poem."}],
                                                                        "role": "model"}, "finishReason": "STOP"}],
                                            "modelVersion": model}),
            "rate_limited": lambda: _error(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota, please "
                                           "check your plan and billing details.",
                                           _quota_details("GenerateRequestsPerMinutePerProjectPerModel", "0.02s")),
            "daily_quota": lambda: _error(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota.",
                                          _quota_details("GenerateRequestsPerDayPerProjectPerModel-FreeTier", None)),
            # A per-minute limit without RetryInfo (and no Retry-After header): the client picks the wait.
            "rate_limited_bare": lambda: _error(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota, "
                                                "please check your plan and billing details.",
                                                _quota_details("GenerateRequestsPerMinutePerProjectPerModel", None)),
            # The plan does not include the model at all: a limit of 0 never clears (the free tier's image models).
            "no_free_tier": lambda: _error(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota, please check "
                                           "your plan and billing details.\n* Quota exceeded for metric: "
                                           "generativelanguage.googleapis.com/generate_content_free_tier_requests, "
                                           "limit: 0, model: gemini-3-pro-image",
                                           _quota_details("GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                                                          "31s", limit="0")),
            "server_error": lambda: _error(500, "INTERNAL", "An internal error has occurred."),
            "overloaded": lambda: _error(503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
            "permission": lambda: _error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers."),
            "malformed": lambda: Reply(200, '{"candidates": [{"content": '),
            "unauthenticated": lambda: _error(401, "UNAUTHENTICATED", "Request had invalid authentication "
                                              "credentials. Expected OAuth 2 access token."),
            "reset": lambda: Reply(reset=True),
            "slow": lambda: Reply(200, {"candidates": []}, delay=1.5),
        }
        return answers[behaviour]()

    def _caption(self, body: dict) -> Reply:
        """Vision: an image part and an instruction in, one sentence of text out."""
        parts = body["contents"][0]["parts"]
        self.captions.append(parts)
        has_image = any("inlineData" in part for part in parts)
        text = self.caption_text if has_image else ""
        return Reply(200, {"candidates": [{"content": {"parts": [{"text": text}], "role": "model"},
                                           "finishReason": "STOP"}],
                           "usageMetadata": {"promptTokenCount": 300, "candidatesTokenCount": 20,
                                             "totalTokenCount": 320}})

    def _predict(self, behaviour: str, prompt: str) -> Reply:
        if behaviour == "filtered":
            return Reply(200, {"predictions": [{"raiFilteredReason": "Your current safety filter threshold "
                                                "filtered out 1 generated image."}]})
        if behaviour == "dropped":
            return Reply(200, {})
        return Reply(200, {"predictions": [{"mimeType": "image/png",
                                            "bytesBase64Encoded": base64.b64encode(png_for(prompt)).decode()}]})
