"""The model catalog: canonical ids, aliases, prices and the providers that serve each model."""
