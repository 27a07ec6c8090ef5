"""The XML over TCP surface (protocols.md §1, port 12345): ``framing`` cuts the byte stream into
requests, ``request`` parses one into plain values, ``handler`` answers it through the desk,
``reply`` renders the ``<results>`` document, ``server`` holds the connections."""
