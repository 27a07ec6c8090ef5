"""The HTTP JSON API and its WebSocket streams (port 8080): one FastAPI router per OpenAPI tag
(``admin``, ``account``, ``orders``, ``market``, ``health``) and ``streams``, assembled by
``app.create_app`` around the desk; ``auth`` and ``dependencies`` say who is calling, ``models``
holds the bodies and their validation, ``errors`` how the API says no."""
