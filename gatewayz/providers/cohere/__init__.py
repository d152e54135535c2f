"""The native Cohere v2 Chat upstream (`type: cohere`): see adapter.py."""

from gatewayz.providers.cohere.adapter import CohereAdapter, make

__all__ = ["CohereAdapter", "make"]
