"""Host primitives the lab builds on: named network namespaces and process control."""
