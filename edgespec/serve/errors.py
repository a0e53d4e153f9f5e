"""OpenAI-style errors: one exception that carries its HTTP status and turns into the `{"error": {...}}` body."""

from __future__ import annotations


class APIError(Exception):
    """A request the server answers with an error object; the server goes on serving."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def unauthorized() -> APIError:
    # Clients (and proxies) expect the scheme named on a 401.
    return APIError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'", code="invalid_api_key",
                    headers={"WWW-Authenticate": "Bearer"})


def model_not_found(name: str, served: str) -> APIError:
    return APIError(404, f"the model '{name}' does not exist: this server serves '{served}'", param="model",
                    code="model_not_found")


def busy(waiting: int, retry_after: int) -> APIError:
    return APIError(429, f"the server is busy ({waiting} requests waiting): retry in {retry_after} s",
                    type="requests", code="rate_limit_exceeded", headers={"Retry-After": str(retry_after)})


def server_error(message: str) -> APIError:
    return APIError(500, message, type="server_error")
