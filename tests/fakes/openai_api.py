"""A fake of OpenAI's Images API (POST /v1/images/generations), as documented, on loopback.

Answers are chosen per request by ``script(prompt, number) -> behaviour``; the behaviours
reproduce the API's documented bodies and headers, including its error shapes
(``{"error": {"message", "type", "param", "code"}}``). Requests without the expected bearer key
get the API's 401. Image URLs (for OpenAI-compatible servers) are served by the fake itself.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable

from tests.fakes.images import png_for
from tests.fakes.server import LoopbackServer, Received, Reply

API_KEY = "sk-test-blogimg-fake"
Script = Callable[[str, int], str]
# Tokens the fake reports per image; the price table turns them into dollars.
USAGE = {"input_tokens": 50, "output_tokens": 4160, "total_tokens": 4210,
         "input_tokens_details": {"text_tokens": 50, "image_tokens": 0},
         "output_tokens_details": {"image_tokens": 4160, "text_tokens": 0}}


def _error(status: int, message: str, type_: str, code: str | None, headers: dict | None = None) -> Reply:
    return Reply(status, {"error": {"message": message, "type": type_, "param": None, "code": code}},
                 headers or {})


class FakeOpenAI(LoopbackServer):
    def __init__(self, script: Script = lambda prompt, number: "ok", *, usage: bool = True,
                 private_url: str = "http://127.0.0.1:9/secret.png") -> None:
        super().__init__(self._answer)
        self.script = script
        self.usage = usage
        self.private_url = private_url
        self.generations = 0  #: requests to the generations endpoint
        self.behaviours: list[str] = []

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def _answer(self, request: Received) -> Reply:
        if request.method == "GET" and request.path.startswith("/files/"):
            prompt = request.path.removeprefix("/files/").removesuffix(".png")
            return Reply(200, png_for(prompt), {"Content-Type": "image/png"})
        if request.path != "/v1/images/generations" or request.method != "POST":
            return _error(404, f"Invalid URL ({request.method} {request.path})", "invalid_request_error", None)
        with self._lock:
            self.generations += 1
            number = self.generations
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return _error(401, "Incorrect API key provided: sk-****. You can find your API key at "
                          "https://platform.openai.com/account/api-keys.", "invalid_request_error", "invalid_api_key")
        body = request.json()
        prompt = body.get("prompt", "")
        behaviour = self.script(prompt, number)
        self.behaviours.append(behaviour)
        return self._reply(behaviour, prompt, body)

    def _reply(self, behaviour: str, prompt: str, body: dict) -> Reply:
        created = int(time.time())
        image = {"b64_json": base64.b64encode(png_for(prompt)).decode()}
        answers: dict[str, Callable[[], Reply]] = {
            "ok": lambda: Reply(200, {"created": created, "data": [image], "background": "opaque",
                                      "output_format": "png", "quality": body.get("quality"),
                                      "size": body.get("size"), **({"usage": USAGE} if self.usage else {})}),
            "ok_url": lambda: Reply(200, {"created": created, "data": [
                {"url": f"{self.url}/files/{prompt.replace(' ', '_')[:40]}.png", "revised_prompt": f"revised: {prompt}"}]}),
            "url_private": lambda: Reply(200, {"created": created, "data": [{"url": self.private_url}]}),
            "rate_limited": lambda: _error(429, "Rate limit reached for gpt-image in organization org-x on "
                                           "images per minute (IPM): Limit 5, Used 5, Requested 1.",
                                           "requests", "rate_limit_exceeded", {"retry-after-ms": "20", "retry-after": "1"}),
            "rate_limited_bare": lambda: _error(429, "Rate limit reached for gpt-image in organization org-x on "
                                                "images per minute (IPM): Limit 5, Used 5, Requested 1.",
                                                "requests", "rate_limit_exceeded"),
            # Out of credit, said only by the error's type (code null): waiting cannot cure it.
            "quota_by_type": lambda: _error(429, "You exceeded your current quota, please check your plan and "
                                            "billing details.", "insufficient_quota", None),
            "server_error": lambda: _error(500, "The server had an error while processing your request. "
                                           "Sorry about that!", "server_error", None),
            "overloaded": lambda: _error(503, "The engine is currently overloaded, please try again later",
                                         "server_error", None),
            "refused": lambda: _error(400, "Your request was rejected as a result of our safety system. "
                                      "Your request may contain content that is not allowed by our safety system.",
                                      "image_generation_user_error", "moderation_blocked"),
            "quota": lambda: _error(429, "You exceeded your current quota, please check your plan and billing "
                                    "details.", "insufficient_quota", "insufficient_quota"),
            "empty": lambda: Reply(200, {"created": created, "data": []}),
            "malformed": lambda: Reply(200, '{"created": 1, "data": [{"b64_json": "iVBOR'),
            "truncated": lambda: Reply(200, {"created": created, "data": [
                {"b64_json": base64.b64encode(png_for(prompt)[:60]).decode()}], "usage": USAGE}),
            "reset": lambda: Reply(reset=True),
            "slow": lambda: Reply(200, {"created": created, "data": [image]}, delay=1.5),
        }
        return answers[behaviour]()
