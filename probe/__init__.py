"""`sync-async-lab probe`: the lab's measurements on a user's own FastAPI app (probe/run.py)."""
