"""The HTTP client: FastAPI REST and WebSocket API and the web console (``carrier serve``).

app = create_app(settings, store, engine, memory)      # an ASGI app
await serve(settings)                                  # builds everything, runs uvicorn
"""

from carrier.clients.http.app import create_app

__all__ = ["create_app"]
