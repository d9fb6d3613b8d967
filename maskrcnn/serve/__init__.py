"""HTTP serving: the FastAPI app, dynamic batching, the web page (needs maskrcnn[serve])."""
