"""Code shared by two or more Marketlog services: codec, amounts, config, topics, the EOS loop."""
