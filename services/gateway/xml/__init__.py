"""The XML over TCP surface (protocols.md §1, port 12345): ``framing`` cuts the byte stream into
requests, ``request`` parses one into plain values, ``handler`` starts it through the desk
(appends) and makes its answers later, ``reply`` renders the ``<results>`` document, ``server``
holds the connections (pipelined: requests started as they arrive, replies in request order)."""
